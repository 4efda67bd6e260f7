//! Property-based fuzzing of the provider webhooks (`webhooks.rs`).
//!
//! - `sign`/`verify` (pure, WhatsApp's `X-Hub-Signature-256`): a signature verifies for its own
//!   body and secret only; `verify` never panics on any header text and accepts no spelling of the
//!   signature but its hex (either case).
//! - `twilio_signature` (pure, SMS's `X-Twilio-Signature`): a signature verifies for its own token,
//!   URL and parameters (in any order) only, up to what the scheme itself signs (the URL, then
//!   names and values concatenated); no header text but the signature's own base64 verifies.
//! - The handlers, driven in-process through `webhooks::router` on a test database where tenant
//!   `acme` has its provider accounts (their payload parsing lives inside the handlers, with the
//!   writes): a body without acme's signature is 401 on acme's path whatever it holds (another
//!   tenant's signature included; for SMS, one over another URL too), and 404 on the path of a
//!   tenant without accounts; a signed
//!   body of any bytes (invalid UTF-8, NUL, control characters, ~100 KB) never panics and never
//!   fails as a server error: 400 when it cannot be read (not JSON; a form without
//!   `MessageSid`/`MessageStatus`, or `From` not E.164), 403 when it is of another account (a
//!   WhatsApp change of another phone number id, or with statuses or messages and none; a form
//!   whose `AccountSid` is not acme's), else 200; the verify handshake answers the challenge only
//!   to acme's verify token.
//!
//! Needs Postgres like the crate's other tests (`DW_TEST_DATABASE_URL`). Cases: `PROPTEST_CASES`
//! (`make fuzz` runs many more); failures are kept in `tests/fuzz-regressions/fuzz_webhooks.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use dw_ids::{RequestId, TenantId};
use dw_testkit::TestDb;
use messaging_templates::app::CommandContext;
use messaging_templates::app::provider_config::ProviderAccounts;
use messaging_templates::domain::PhoneNumber;
use messaging_templates::domain::provider_config::{
    AccountSid, Change, PhoneNumberId, ProviderChange, ProviderSecret, SmsAccount, WhatsappAccount,
};
use messaging_templates::domain::twilio_signature::{self, WebhookBaseUrl};
use messaging_templates::provider_secrets::ProviderSecretsKey;
use messaging_templates::webhooks::{router, sign, verify};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const WHATSAPP_SECRET: &str = "fuzz-whatsapp-app-secret";
const VERIFY_TOKEN: &str = "fuzz-verify-token";
const SMS_SECRET: &str = "fuzz-sms-secret";
const PHONE_NUMBER_ID: &str = "100000000000001";
const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// Another tenant's secret: it signs nothing of acme's.
const OTHER_SECRET: &str = "globex-app-secret";
/// `DW_WEBHOOK_PUBLIC_URL` of these requests: SMS callbacks are signed for URLs under it.
const PUBLIC_BASE: &str = "https://hooks.example.test";

const TARGET: dw_fuzz::Target = dw_fuzz::Target::new("tests/fuzz-regressions/fuzz_webhooks.txt");

/// One runtime and one migrated database for the whole file; each case is one request.
struct Hooks {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

static HOOKS: LazyLock<Hooks> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::create(&messaging_templates::MIGRATOR)).unwrap();
    let accounts = ProviderAccounts::new(db.pool.clone(), ProviderSecretsKey::from_bytes(&[3; 32]));
    runtime.block_on(configure_acme(&accounts));
    let public_base = WebhookBaseUrl::parse(PUBLIC_BASE).unwrap();
    Hooks { runtime, router: router(db.pool, accounts, public_base) }
});

/// acme's manager sets its provider accounts (the app layer of `SetProviderConfig`).
async fn configure_acme(accounts: &ProviderAccounts) {
    let ctx = CommandContext {
        tenant: TenantId::parse("acme").unwrap(),
        actor: "boss".into(),
        privileged: true,
        request_id: RequestId::parse("fuzz-providers").unwrap(),
        operation: "dw.messaging.v1.ProviderConfigService/SetProviderConfig",
        metadata: Default::default(),
        request_hash: vec![1],
    };
    let change = ProviderChange {
        whatsapp: Change::Set(WhatsappAccount {
            phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
            app_secret: ProviderSecret::parse(WHATSAPP_SECRET).unwrap(),
            verify_token: ProviderSecret::parse(VERIFY_TOKEN).unwrap(),
        }),
        sms: Change::Set(SmsAccount {
            account_sid: AccountSid::parse(ACCOUNT_SID).unwrap(),
            auth_token: ProviderSecret::parse(SMS_SECRET).unwrap(),
        }),
        send_webhooks: None,
    };
    accounts.set(&ctx, &change).await.unwrap();
}

/// The rule, written again here: every change naming a phone number id names acme's, and every
/// change with statuses or messages names one.
fn about_acme(payload: &Value) -> bool {
    let changes =
        payload["entry"].as_array().into_iter().flatten().flat_map(|e| e["changes"].as_array().into_iter().flatten());
    changes.into_iter().all(|change| {
        let value = &change["value"];
        let acts = ["statuses", "messages"].iter().any(|k| value[*k].as_array().is_some_and(|a| !a.is_empty()));
        match &value["metadata"]["phone_number_id"] {
            Value::Null => !acts,
            named => named.as_str() == Some(PHONE_NUMBER_ID),
        }
    })
}

fn call(request: Request<Body>) -> (StatusCode, String) {
    let hooks = &*HOOKS;
    hooks.runtime.block_on(async {
        let response = hooks.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

fn post(path: &str, header: &str, signature: Option<&str>, body: Vec<u8>) -> StatusCode {
    let mut request = Request::post(path);
    if let Some(signature) = signature {
        request = request.header(header, signature);
    }
    call(request.body(Body::from(body)).unwrap()).0
}

/// Any text, weighted towards what breaks parsers and storage: NUL and control characters,
/// JSON and form punctuation, digits and pluses (phone numbers), non-ASCII.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        3 => "[a-zA-Z0-9]{1,10}",
        1 => prop::sample::select(vec![
            "\0", "\t", "\n", "\r", "\u{7f}", "\u{202e}", "\u{feff}", "\"", "\\", "&", "=", "%", "+", "%00", "é",
            "😀", "STOP", "START", "+5511", "\u{d7ff}",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

/// Any JSON value of a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        hostile_text(6).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(hostile_text(4), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A timestamp as providers send it, or not.
fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1_600_000_000i64..1_900_000_000).prop_map(|t| Value::from(t.to_string())),
        any::<i64>().prop_map(Value::from),
        any::<i64>().prop_map(|t| Value::from(t.to_string())),
        any_json(),
    ]
}

/// An id as providers send it, or anything else.
fn provider_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "wamid\\.[A-Za-z0-9]{4,12}".prop_map(Value::from),
        1 => hostile_text(8).prop_map(Value::from),
        1 => any_json(),
    ]
}

/// A WhatsApp status with hostile values.
fn whatsapp_status() -> impl Strategy<Value = Value> {
    let status = prop_oneof![
        3 => prop::sample::select(vec!["sent", "delivered", "read", "failed"]).prop_map(Value::from),
        1 => any_json(),
    ];
    let errors = prop_oneof![
        Just(Value::Null),
        any_json(),
        (any::<i64>(), hostile_text(8)).prop_map(|(code, title)| json!([{"code": code, "title": title}])),
    ];
    (provider_id(), status, timestamp(), errors).prop_map(
        |(id, status, timestamp, errors)| json!({"id": id, "status": status, "timestamp": timestamp, "errors": errors}),
    )
}

/// A WhatsApp client message with hostile values.
fn whatsapp_message() -> impl Strategy<Value = Value> {
    let from = prop_oneof![
        3 => "\\+?[1-9][0-9]{6,14}".prop_map(Value::from),
        1 => hostile_text(8).prop_map(Value::from),
        1 => any_json(),
    ];
    let text = prop_oneof![3 => hostile_text(20).prop_map(|body| json!({"body": body})), 1 => any_json()];
    let kind = prop_oneof![Just(Value::from("text")), any_json()];
    (from, provider_id(), text, kind, timestamp()).prop_map(|(from, id, text, kind, timestamp)| {
        json!({"from": from, "id": id, "text": text, "type": kind, "timestamp": timestamp})
    })
}

/// WhatsApp payloads shaped like Meta's (entries of changes with statuses, messages and
/// contacts), or any JSON.
fn whatsapp_payload() -> impl Strategy<Value = Value> {
    let contacts = prop_oneof![
        Just(Value::Null),
        hostile_text(10).prop_map(|name| json!([{"profile": {"name": name}}])),
        any_json(),
    ];
    let value = (
        prop::collection::vec(whatsapp_status(), 0..3),
        prop::collection::vec(whatsapp_message(), 0..3),
        contacts,
    )
        .prop_map(
            |(statuses, messages, contacts)| json!({"statuses": statuses, "messages": messages, "contacts": contacts}),
        );
    let phone_number_id = prop_oneof![
        6 => Just(Value::from(PHONE_NUMBER_ID)),
        1 => Just(Value::from("2077")),
        1 => Just(Value::Null),
        1 => any_json(),
    ];
    let value = (value, phone_number_id).prop_map(|(mut value, id)| {
        if !id.is_null() {
            value["metadata"] = json!({"phone_number_id": id});
        }
        value
    });
    let change = value.prop_map(|value| json!({"field": "messages", "value": value}));
    let entry = prop::collection::vec(change, 0..3).prop_map(|changes| json!({"id": "WABA", "changes": changes}));
    prop_oneof![
        4 => prop::collection::vec(entry, 0..3)
            .prop_map(|entry| json!({"object": "whatsapp_business_account", "entry": entry})),
        1 => any_json(),
    ]
}

/// Form fields as SMS providers post them, with hostile names and values.
fn sms_form() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = vec!["MessageSid", "MessageStatus", "ErrorCode", "ErrorMessage", "From", "Body"];
    let name = prop_oneof![4 => prop::sample::select(names).prop_map(str::to_owned), 1 => hostile_text(4)];
    let values = vec!["delivered", "read", "failed", "undelivered", "sent", "queued", "STOP", "start"];
    let value = prop_oneof![
        2 => prop::sample::select(values).prop_map(str::to_owned),
        2 => "\\+?[1-9][0-9]{6,14}",
        2 => hostile_text(12),
    ];
    let account = prop_oneof![
        4 => Just(Some(ACCOUNT_SID.to_owned())),
        1 => Just(Some("AC00000000000000000000000000000002".to_owned())),
        1 => Just(None),
        1 => hostile_text(6).prop_map(Some),
    ];
    (account, prop::collection::vec((name, value), 0..7)).prop_map(|(account, mut form)| {
        if let Some(account) = account {
            form.insert(0, ("AccountSid".to_owned(), account));
        }
        form
    })
}

/// Whether the form is of acme's account (its first `AccountSid`, as the handler reads it).
fn of_acme(form: &[(String, String)]) -> bool {
    field(form, "AccountSid") == Some(ACCOUNT_SID)
}

/// Query parameters of the verify handshake, with hostile names and values.
fn handshake_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = vec!["hub.mode", "hub.verify_token", "hub.challenge"];
    let name = prop_oneof![3 => prop::sample::select(names).prop_map(str::to_owned), 1 => hostile_text(4)];
    let value =
        prop_oneof![prop::sample::select(vec!["subscribe", VERIFY_TOKEN]).prop_map(str::to_owned), hostile_text(8)];
    prop::collection::vec((name, value), 0..5)
}

/// The three signed endpoints: path, signature header, secret.
fn endpoint() -> impl Strategy<Value = (&'static str, &'static str, &'static str)> {
    prop::sample::select(vec![
        ("/webhooks/whatsapp/acme", "x-hub-signature-256", WHATSAPP_SECRET),
        ("/webhooks/sms/acme/status", "x-twilio-signature", SMS_SECRET),
        ("/webhooks/sms/acme/inbound", "x-twilio-signature", SMS_SECRET),
    ])
}

/// The signature of `body` posted to `path`, as its provider makes it under `secret`: Meta's over
/// the body, Twilio's over the public URL and the form's parameters.
fn signature_for(path: &str, secret: &str, body: &[u8]) -> String {
    if path.starts_with("/webhooks/whatsapp/") {
        return sign(secret, body);
    }
    twilio_signature::signature(secret, &format!("{PUBLIC_BASE}{path}"), &decode(body))
}

fn decode(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The bytes Twilio's scheme signs, written again here: the URL, then every pair sorted, name
/// then value.
fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    sorted.iter().fold(url.to_owned(), |text, (name, value)| format!("{text}{name}{value}"))
}

/// URLs as providers are given them, or anything else.
fn any_url() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ("https?", "[a-z]{1,8}\\.test", "(/[a-z0-9%]{0,6}){0,3}", "(\\?[a-z]=[0-9&]{0,4})?")
            .prop_map(|(scheme, host, path, query)| format!("{scheme}://{host}{path}{query}")),
        1 => hostile_text(12),
    ]
}

fn encode(form: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish().into_bytes()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The provider's message id of a form, when it is one: Postgres text cannot hold NUL.
fn sid_of(form: &[(String, String)]) -> Option<&str> {
    field(form, "MessageSid").filter(|sid| !sid.contains('\0'))
}

/// Any body bytes, huge ones included.
fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (1usize..100_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

proptest! {
    #![proptest_config(TARGET.config(1024))]

    /// A signature verifies for its own body and secret, and for no other.
    #[test]
    fn signatures_verify_for_their_body_and_secret_only(
        secret in hostile_text(8),
        other_secret in hostile_text(8),
        body in any_body(),
        other_body in any_body(),
    ) {
        let signature = sign(&secret, &body);
        prop_assert!(verify(&secret, &body, Some(&signature)));
        prop_assert!(verify(&secret, &body, Some(&signature.to_uppercase().replacen("SHA256=", "sha256=", 1))));
        if other_body != body {
            prop_assert!(!verify(&secret, &other_body, Some(&signature)));
        }
        // HMAC pads a short key with zero bytes: keys equal but for trailing NULs are one key.
        if other_secret.trim_end_matches('\0') != secret.trim_end_matches('\0') {
            prop_assert!(!verify(&other_secret, &body, Some(&signature)));
        }
        prop_assert!(!verify(&secret, &body, None));
    }

    /// Any header text: no panic, and only the signature's own hex (in either case) verifies.
    #[test]
    fn only_the_signature_itself_verifies(
        body in prop::collection::vec(any::<u8>(), 0..64),
        header in prop_oneof![
            hostile_text(20),
            hostile_text(70).prop_map(|t| format!("sha256={t}")),
            "sha256=[0-9a-fA-F+ -]{60,68}",
        ],
        at in any::<prop::sample::Index>(),
        spelling in "[0-9a-fA-F+ \\-_.]{2}",
    ) {
        let canonical = sign(WHATSAPP_SECRET, &body);
        let is_canonical = header.eq_ignore_ascii_case(&canonical) && header.starts_with("sha256=");
        prop_assert_eq!(verify(WHATSAPP_SECRET, &body, Some(&header)), is_canonical);
        // The canonical signature with one byte's two hex digits spelled some other way.
        let pair = 7 + 2 * at.index(32);
        let respelled = format!("{}{spelling}{}", &canonical[..pair], &canonical[pair + 2..]);
        let same_byte = spelling.eq_ignore_ascii_case(&canonical[pair..pair + 2]);
        prop_assert_eq!(verify(WHATSAPP_SECRET, &body, Some(&respelled)), same_byte, "{:?} for {:?}", respelled, canonical);
    }

    /// A Twilio signature verifies for its token, URL and parameters in any order, and for other
    /// ones exactly when the scheme signs the same bytes (names and values run together).
    #[test]
    fn twilio_signatures_verify_for_their_url_and_parameters_only(
        token in hostile_text(8),
        other_token in hostile_text(8),
        url in any_url(),
        other_url in any_url(),
        params in prop::collection::vec((hostile_text(4), hostile_text(6)), 0..6),
        other_params in prop::collection::vec((hostile_text(4), hostile_text(6)), 0..6),
        order in any::<prop::sample::Index>(),
    ) {
        let signature = twilio_signature::signature(&token, &url, &params);
        let mut shuffled = params.clone();
        if !shuffled.is_empty() {
            let turn = order.index(shuffled.len());
            shuffled.rotate_left(turn);
        }
        prop_assert!(twilio_signature::verify(&token, &url, &shuffled, Some(&signature)));
        let same_text = signed_text(&other_url, &other_params) == signed_text(&url, &params);
        prop_assert_eq!(twilio_signature::verify(&token, &other_url, &other_params, Some(&signature)), same_text);
        // HMAC pads a short key with zero bytes: keys equal but for trailing NULs are one key.
        if other_token.trim_end_matches('\0') != token.trim_end_matches('\0') {
            prop_assert!(!twilio_signature::verify(&other_token, &url, &params, Some(&signature)));
        }
        prop_assert!(!twilio_signature::verify(&token, &url, &params, None));
    }

    /// Any header text: no panic, and only the signature's own base64 verifies.
    #[test]
    fn only_the_twilio_signature_itself_verifies(
        params in prop::collection::vec((hostile_text(4), hostile_text(6)), 0..4),
        header in prop_oneof![hostile_text(30), "[A-Za-z0-9+/=]{26,30}", "[A-Za-z0-9+/]{27}="],
        at in any::<prop::sample::Index>(),
        spelling in "[A-Za-z0-9+/= _-]",
    ) {
        let url = format!("{PUBLIC_BASE}/webhooks/sms/acme/status");
        let canonical = twilio_signature::signature(SMS_SECRET, &url, &params);
        prop_assert_eq!(twilio_signature::verify(SMS_SECRET, &url, &params, Some(&header)), header == canonical);
        // The canonical signature with one character spelled some other way.
        let i = at.index(canonical.len());
        let respelled = format!("{}{spelling}{}", &canonical[..i], &canonical[i + 1..]);
        let verifies = twilio_signature::verify(SMS_SECRET, &url, &params, Some(&respelled));
        prop_assert_eq!(verifies, respelled == canonical, "{:?} for {:?}", respelled, canonical);
    }

    /// A request without the right signature is 401, whatever its body.
    #[test]
    fn unsigned_requests_are_refused(
        path in endpoint(),
        body in any_body(),
        signature in prop_oneof![Just(None), "[ -~]{0,80}".prop_map(Some), Just(Some("wrong".to_owned()))],
        wrong_secret in any::<bool>(),
    ) {
        let (path, header, secret) = path;
        let signature = if wrong_secret { Some(signature_for(path, OTHER_SECRET, &body)) } else { signature };
        prop_assume!(signature.as_deref() != Some(signature_for(path, secret, &body).as_str()));
        prop_assert_eq!(post(path, header, signature.as_deref(), body.clone()), StatusCode::UNAUTHORIZED);
        // A tenant without provider accounts has no such endpoint, whatever is signed.
        let unconfigured = path.replace("acme", "initech");
        let signed = signature_for(&unconfigured, secret, &body);
        prop_assert_eq!(post(&unconfigured, header, Some(&signed), body), StatusCode::NOT_FOUND);
    }

    /// An SMS callback signed with acme's token for any URL but its own public one is 401.
    #[test]
    fn sms_signed_for_another_url_is_refused(
        form in sms_form(),
        inbound in any::<bool>(),
        url in prop_oneof![
            any_url(),
            Just(format!("{PUBLIC_BASE}/webhooks/sms/globex/status")),
            Just(format!("{PUBLIC_BASE}/webhooks/sms/acme/status?x=1")),
            Just("http://hooks.example.test/webhooks/sms/acme/status".to_owned()),
            Just(format!("{PUBLIC_BASE}/webhooks/sms/acme/status")),
            Just(format!("{PUBLIC_BASE}/webhooks/sms/acme/inbound")),
        ],
    ) {
        let path = if inbound { "/webhooks/sms/acme/inbound" } else { "/webhooks/sms/acme/status" };
        prop_assume!(url != format!("{PUBLIC_BASE}{path}"));
        let body = encode(&form);
        let signature = twilio_signature::signature(SMS_SECRET, &url, &form);
        prop_assert_eq!(post(path, "x-twilio-signature", Some(&signature), body), StatusCode::UNAUTHORIZED);
    }

    /// A signed WhatsApp body, of any bytes or shaped like Meta's with hostile values: no panic,
    /// no server error; 400 exactly when it is not JSON, 403 when it is not only about acme's
    /// phone number.
    #[test]
    fn signed_whatsapp_bodies_are_read_or_refused(
        body in prop_oneof![1 => any_body(), 3 => whatsapp_payload().prop_map(|v| v.to_string().into_bytes())],
    ) {
        let payload = serde_json::from_slice::<Value>(&body).ok();
        let signature = sign(WHATSAPP_SECRET, &body);
        let status = post("/webhooks/whatsapp/acme", "x-hub-signature-256", Some(&signature), body.clone());
        let expected = match payload {
            None => StatusCode::BAD_REQUEST,
            Some(payload) if !about_acme(&payload) => StatusCode::FORBIDDEN,
            Some(_) => StatusCode::OK,
        };
        prop_assert_eq!(status, expected, "{:?}", String::from_utf8_lossy(&body));
    }

    /// A signed SMS status callback: no panic, no server error; 403 unless of acme's account,
    /// then 400 exactly without `MessageSid` or `MessageStatus`.
    #[test]
    fn signed_sms_statuses_are_read_or_refused(form in sms_form()) {
        let body = encode(&form);
        let readable = sid_of(&form).is_some() && field(&form, "MessageStatus").is_some();
        let signature = signature_for("/webhooks/sms/acme/status", SMS_SECRET, &body);
        let status = post("/webhooks/sms/acme/status", "x-twilio-signature", Some(&signature), body);
        let expected = match (of_acme(&form), readable) {
            (false, _) => StatusCode::FORBIDDEN,
            (true, true) => StatusCode::OK,
            (true, false) => StatusCode::BAD_REQUEST,
        };
        prop_assert_eq!(status, expected, "{:?}", form);
    }

    /// A signed SMS inbound message: no panic, no server error; 403 unless of acme's account, then
    /// 400 exactly without `MessageSid` or an E.164 `From`.
    #[test]
    fn signed_sms_inbound_is_read_or_refused(form in sms_form()) {
        let body = encode(&form);
        let from_ok = field(&form, "From").is_some_and(|f| PhoneNumber::parse(f).is_ok());
        let readable = sid_of(&form).is_some() && from_ok;
        let signature = signature_for("/webhooks/sms/acme/inbound", SMS_SECRET, &body);
        let status = post("/webhooks/sms/acme/inbound", "x-twilio-signature", Some(&signature), body);
        let expected = match (of_acme(&form), readable) {
            (false, _) => StatusCode::FORBIDDEN,
            (true, true) => StatusCode::OK,
            (true, false) => StatusCode::BAD_REQUEST,
        };
        prop_assert_eq!(status, expected, "{:?}", form);
    }

    /// Signed SMS bodies of any bytes: no panic, no server error.
    #[test]
    fn signed_sms_bytes_never_fail_the_server(body in any_body(), inbound in any::<bool>()) {
        let path = if inbound { "/webhooks/sms/acme/inbound" } else { "/webhooks/sms/acme/status" };
        let signature = signature_for(path, SMS_SECRET, &body);
        let status = post(path, "x-twilio-signature", Some(&signature), body);
        let answers = [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN];
        prop_assert!(answers.contains(&status), "{}", status);
    }

    /// The verify handshake answers the challenge to `hub.mode=subscribe` with the verify token,
    /// and 403 to anything else.
    #[test]
    fn the_handshake_answers_only_the_verify_token(
        params in handshake_params(),
    ) {
        let query = encode(&params);
        let uri = format!("/webhooks/whatsapp/acme?{}", String::from_utf8(query).unwrap());
        let (status, body) = call(Request::get(uri).body(Body::empty()).unwrap());
        let subscribe = field(&params, "hub.mode") == Some("subscribe");
        let admitted = subscribe && field(&params, "hub.verify_token") == Some(VERIFY_TOKEN);
        if admitted {
            prop_assert_eq!(status, StatusCode::OK);
            prop_assert_eq!(body, field(&params, "hub.challenge").unwrap_or_default());
        } else {
            prop_assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }
}
