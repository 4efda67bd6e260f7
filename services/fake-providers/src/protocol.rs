//! What the fakes accept and answer, without I/O: request checks shaped like the providers'
//! (tokens, fields, error bodies), message ids, the Meta and Twilio webhook signatures and status
//! payloads.

use axum::http::StatusCode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::WABA_ID;

/// Characters of an SMS body shown in the log line.
const LOGGED_BODY_CHARS: usize = 40;

/// A WhatsApp message id: `wamid.` and 32 upper-case hex digits.
pub fn new_wamid() -> String {
    format!("wamid.{}", uuid::Uuid::now_v7().simple().to_string().to_ascii_uppercase())
}

/// An SMS message sid: `SM` and 32 lower-case hex digits.
pub fn new_sms_sid() -> String {
    format!("SM{}", uuid::Uuid::now_v7().simple())
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The `X-Hub-Signature-256` value of `body`: `sha256=<hex HMAC-SHA256(app_secret, body)>`.
pub fn hub_signature(app_secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(app_secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex(&mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// A WhatsApp status notification (webhook field `messages`) for one message.
pub fn status_payload(phone_number_id: &str, wamid: &str, status: &str, recipient_id: &str, timestamp: i64) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "phone_number_id": phone_number_id },
                    "statuses": [{
                        "id": wamid,
                        "status": status,
                        "timestamp": timestamp.to_string(),
                        "recipient_id": recipient_id,
                    }],
                },
            }],
        }],
    })
}

/// The parameters of an SMS status callback for one message of the account `account_sid`.
pub fn sms_status_params(account_sid: &str, sid: &str, status: &str, to: &str, from: &str) -> Vec<(String, String)> {
    [("AccountSid", account_sid), ("MessageSid", sid), ("MessageStatus", status), ("To", to), ("From", from)]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// A form body (`application/x-www-form-urlencoded`, as the `Messages` APIs post their callbacks).
pub fn form_body(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

/// The `X-Twilio-Signature` of a callback to `url` with `params`: the one function
/// messaging-templates verifies with.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    messaging_templates::domain::twilio_signature::signature(auth_token, url, params)
}

/// An error answer: HTTP status and JSON body shaped like the provider's.
pub type Refusal = (StatusCode, Value);

fn whatsapp_error(status: StatusCode, code: i64, message: &str) -> Refusal {
    (status, json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "fake"}}))
}

fn sms_error(status: StatusCode, code: i64, message: &str) -> Refusal {
    (
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        }),
    )
}

/// A WhatsApp send the fake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsappSend {
    /// `to` as sent.
    pub to: String,
    /// `to` without `+`: the `wa_id` and the status' `recipient_id`.
    pub wa_id: String,
    /// One line for the log.
    pub summary: String,
}

/// Checks a WhatsApp Cloud API send: a bearer token, a JSON object with
/// `messaging_product: whatsapp` and a `to` made of digits (an optional leading `+`).
pub fn check_whatsapp(authorization: Option<&str>, body: &[u8]) -> Result<WhatsappSend, Refusal> {
    let bearer = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    if bearer.is_empty() {
        return Err(whatsapp_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token."));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|_| whatsapp_error(StatusCode::BAD_REQUEST, 100, "(#100) The request body is not valid JSON"))?;
    if request["messaging_product"] != "whatsapp" {
        return Err(whatsapp_error(
            StatusCode::BAD_REQUEST,
            100,
            "(#100) The parameter messaging_product is required and must be whatsapp.",
        ));
    }
    let to = request["to"].as_str().map(str::trim).unwrap_or_default();
    let wa_id = to.strip_prefix('+').unwrap_or(to);
    if wa_id.is_empty() || wa_id.len() > 15 || !wa_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(whatsapp_error(StatusCode::BAD_REQUEST, 100, "(#100) Invalid parameter: to"));
    }
    let kind = request["type"].as_str().unwrap_or("text");
    let mut summary = format!("to={wa_id} type={kind}");
    if kind == "template" {
        let template = &request["template"];
        let Some(name) = template["name"].as_str().filter(|n| !n.is_empty()) else {
            return Err(whatsapp_error(StatusCode::BAD_REQUEST, 100, "(#100) Invalid parameter: template.name"));
        };
        let language = template["language"]["code"].as_str().unwrap_or("-");
        summary.push_str(&format!(" template={name} lang={language}"));
        for component in template["components"].as_array().into_iter().flatten() {
            let parameters = component["parameters"].as_array().map_or(&[][..], Vec::as_slice);
            let kinds: Vec<&str> = parameters.iter().map(|p| p["type"].as_str().unwrap_or("?")).collect();
            summary.push_str(&format!(" {}[{}]", component["type"].as_str().unwrap_or("?"), kinds.join(",")));
        }
    } else if let Some(text) = request["text"]["body"].as_str() {
        summary.push_str(&format!(" text={}", quoted_prefix(text)));
    }
    Ok(WhatsappSend { to: to.to_owned(), wa_id: wa_id.to_owned(), summary })
}

/// An SMS send the fake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSend {
    pub to: String,
    pub from: String,
    pub body: String,
    pub summary: String,
}

/// Checks an SMS Messages send: basic auth whose user is the account sid of the path (and a
/// non-empty password), a form with `To` (E.164), `From` and `Body`.
pub fn check_sms(account_sid: &str, authorization: Option<&str>, form: &[u8]) -> Result<SmsSend, Refusal> {
    let credentials = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let authenticated = credentials
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .is_some_and(|(user, password)| user == account_sid && !password.is_empty());
    if !authenticated {
        return Err(sms_error(StatusCode::UNAUTHORIZED, 20003, "Authentication Error - invalid username"));
    }
    let mut to = String::new();
    let mut from = String::new();
    let mut body = String::new();
    for (key, value) in form_urlencoded::parse(form) {
        match key.as_ref() {
            "To" => to = value.into_owned(),
            "From" => from = value.into_owned(),
            "Body" => body = value.into_owned(),
            _ => {}
        }
    }
    if to.is_empty() {
        return Err(sms_error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required."));
    }
    let digits = to.strip_prefix('+').unwrap_or_default();
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(sms_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    if from.is_empty() {
        return Err(sms_error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number is required."));
    }
    if body.is_empty() {
        return Err(sms_error(StatusCode::BAD_REQUEST, 21602, "Message body is required."));
    }
    let summary = format!("to={to} from={from} body={} ({} chars)", quoted_prefix(&body), body.chars().count());
    Ok(SmsSend { to, from, body, summary })
}

/// `"text"`, cut to a few characters with `…`.
fn quoted_prefix(text: &str) -> String {
    let mut shown: String = text.chars().take(LOGGED_BODY_CHARS).collect();
    if text.chars().count() > LOGGED_BODY_CHARS {
        shown.push('…');
    }
    format!("{shown:?}")
}
