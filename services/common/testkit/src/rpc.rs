//! Calling the services as a client does in tests: bearer tokens, authenticated requests and
//! fresh request ids.

use dw_auth::{JwtVerifier, Role};

/// A bearer token for `sub` in `tenant` with `roles`, valid for an hour, signed with `secret`.
/// Panics on a secret the verifier refuses: a test's own constant.
pub fn token(secret: &str, tenant: &str, sub: &str, roles: &[Role]) -> String {
    #[allow(clippy::expect_used)]
    let verifier = JwtVerifier::new(secret.as_bytes()).expect("a test secret of at least 16 bytes");
    dw_auth::mint(&verifier, sub, tenant, roles, chrono::Utc::now().timestamp(), 3600)
}

/// `body` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A fresh request id.
pub fn rid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Calls the unary method at `path` (`/package.Service/Method`) with `body` sent as is, not
/// encoded from a message: what a client with another contract, or a hostile one, sends.
pub async fn raw_unary(
    channel: tonic::transport::Channel,
    token: &str,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = authed(token, body);
    grpc.unary(request, http::uri::PathAndQuery::from_static(path), RawCodec).await.map(|_| ())
}

/// Sends bytes as they are; accepts any answer.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        bytes::Buf::advance(src, bytes::Buf::remaining(src));
        Ok(Some(()))
    }
}
