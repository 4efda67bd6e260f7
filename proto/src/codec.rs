//! The codec of every generated service: prost encoding, and on the way in two checks that make
//! bad input a clear `INVALID_ARGUMENT` instead of an `INTERNAL` (tonic's own codec reports an
//! undecodable body as `INTERNAL`, and a NUL byte in a string reaches Postgres, which refuses it):
//!
//! - a body that does not decode as the RPC's request message;
//! - a request whose strings break [`crate::hygiene`]'s rules, named by field path.
//!
//! Only messages named `*Request` are checked, so a client decoding a server's response is never
//! refused for what the server stored before these rules existed.

use std::marker::PhantomData;

use bytes::Buf;
use prost::{Message, Name};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `tonic_prost::ProstCodec` with request checks (set as the `codec_path` of the proto build).
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = CheckedEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        CheckedEncoder { _pd: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { _pd: PhantomData }
    }
}

#[derive(Debug, Clone)]
pub struct CheckedEncoder<T> {
    _pd: PhantomData<T>,
}

impl<T: Message> Encoder for CheckedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        // `EncodeBuf` grows as needed: encoding into it cannot run out of space.
        item.encode(buf).map_err(|error| Status::internal(format!("encoding a response: {error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        let message = U::decode(bytes.clone()).map_err(|error| {
            Status::invalid_argument(format!("the request body is not a valid {}: {error}", U::full_name()))
        })?;
        if U::NAME.ends_with("Request") {
            let violations = crate::hygiene::check_encoded(&U::full_name(), &bytes);
            if !violations.is_empty() {
                return Err(invalid_fields(violations));
            }
        }
        Ok(Some(message))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// `INVALID_ARGUMENT` with a `BadRequest` violation per field, as the services' own checks answer.
fn invalid_fields(violations: Vec<(String, String)>) -> Status {
    let message = violations.iter().map(|(field, why)| format!("{field}: {why}")).collect::<Vec<_>>().join("; ");
    let details = ErrorDetails::with_bad_request(
        violations.into_iter().map(|(field, why)| FieldViolation::new(field, why)).collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, format!("invalid request: {message}"), details)
}
