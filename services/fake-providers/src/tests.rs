#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::*;
use base64::Engine as _;

#[test]
fn the_signature_is_hex_hmac_sha256_of_the_raw_body() {
    // RFC 4231-style known answer (the classic "quick brown fox" HMAC-SHA256 vector).
    assert_eq!(
        hub_signature(b"key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    let body = status_payload("1055", "wamid.X", "read", "5511987654321", 1_714_550_400).to_string();
    let signature = hub_signature(b"dw-local-whatsapp-app-secret", body.as_bytes());
    assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64, "{signature}");
    assert_ne!(signature, hub_signature(b"another-secret", body.as_bytes()));
    assert_ne!(signature, hub_signature(b"dw-local-whatsapp-app-secret", format!("{body} ").as_bytes()));
}

#[test]
fn the_status_payload_has_the_whatsapp_webhook_shape() {
    let payload = status_payload("100000000000001", "wamid.ABC", "delivered", "5511987654321", 1_714_550_400);
    assert_eq!(
        payload,
        json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": "WABA",
                "changes": [{
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"phone_number_id": "100000000000001"},
                        "statuses": [{
                            "id": "wamid.ABC",
                            "status": "delivered",
                            "timestamp": "1714550400",
                            "recipient_id": "5511987654321",
                        }],
                    },
                }],
            }],
        })
    );
}

#[test]
fn generated_ids_look_like_the_providers() {
    let wamid = new_wamid();
    assert!(wamid.starts_with("wamid.") && wamid.len() == 6 + 32, "{wamid}");
    let sid = new_sms_sid();
    assert!(sid.starts_with("SM") && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()), "{sid}");
    assert_ne!(new_wamid(), new_wamid());
}

fn template_body(to: &str) -> Vec<u8> {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "pt_BR"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/a.png"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "José"}, {"type": "text", "text": "A-1"}]},
            ],
        },
    })
    .to_string()
    .into_bytes()
}

#[test]
fn whatsapp_sends_need_a_bearer_token_and_a_recipient() {
    let send = check_whatsapp(Some("Bearer t"), &template_body("5511987654321")).unwrap();
    assert_eq!(send.wa_id, "5511987654321");
    assert_eq!(
        send.summary,
        "to=5511987654321 type=template template=order_shipped lang=pt_BR header[image] body[text,text]"
    );
    assert_eq!(check_whatsapp(Some("Bearer t"), &template_body("+5511987654321")).unwrap().wa_id, "5511987654321");
    let (status, body) = check_whatsapp(None, &template_body("5511987654321")).unwrap_err();
    assert_eq!((status, body["error"]["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(190)));
    assert_eq!(check_whatsapp(Some("Bearer "), b"{}").unwrap_err().0, StatusCode::UNAUTHORIZED);
    let (status, body) = check_whatsapp(Some("Bearer t"), &template_body("not-a-phone")).unwrap_err();
    assert_eq!((status, body["error"]["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(100)));
    assert_eq!(check_whatsapp(Some("Bearer t"), b"not json").unwrap_err().0, StatusCode::BAD_REQUEST);
    let no_product = br#"{"to":"5511987654321","type":"text","text":{"body":"hi"}}"#;
    assert_eq!(check_whatsapp(Some("Bearer t"), no_product).unwrap_err().0, StatusCode::BAD_REQUEST);
    let text = br#"{"messaging_product":"whatsapp","to":"5511987654321","type":"text","text":{"body":"hi"}}"#;
    assert_eq!(check_whatsapp(Some("Bearer t"), text).unwrap().summary, r#"to=5511987654321 type=text text="hi""#);
    let nameless = br#"{"messaging_product":"whatsapp","to":"5511987654321","type":"template","template":{}}"#;
    assert_eq!(check_whatsapp(Some("Bearer t"), nameless).unwrap_err().0, StatusCode::BAD_REQUEST);
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[test]
fn sms_sends_need_the_account_credentials_and_to_from_body() {
    let form = b"To=%2B5511987654321&From=%2B15550000001&Body=Seu+codigo+de+verificacao+e+123456";
    let send = check_sms("AC1", Some(&basic("AC1", "secret")), form).unwrap();
    assert_eq!(send.to, "+5511987654321");
    assert_eq!(send.from, "+15550000001");
    assert_eq!(send.body, "Seu codigo de verificacao e 123456");
    assert_eq!(
        send.summary,
        r#"to=+5511987654321 from=+15550000001 body="Seu codigo de verificacao e 123456" (34 chars)"#
    );
    for authorization in [None, Some(basic("AC2", "secret")), Some(basic("AC1", "")), Some("Basic !!".to_owned())] {
        let (status, body) = check_sms("AC1", authorization.as_deref(), form).unwrap_err();
        assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(20003)));
    }
    let auth = basic("AC1", "secret");
    let code = |form: &[u8]| check_sms("AC1", Some(&auth), form).unwrap_err().1["code"].as_i64();
    assert_eq!(code(b"From=%2B1555&Body=x"), Some(21604));
    assert_eq!(code(b"To=5511987654321&From=%2B1555&Body=x"), Some(21211));
    assert_eq!(code(b"To=%2B5511987654321&Body=x"), Some(21603));
    assert_eq!(code(b"To=%2B5511987654321&From=%2B1555"), Some(21602));
    let long = format!("To=%2B5511987654321&From=%2B1555&Body={}", "a".repeat(50));
    let summary = check_sms("AC1", Some(&auth), long.as_bytes()).unwrap().summary;
    assert!(summary.ends_with(&format!("body=\"{}…\" (50 chars)", "a".repeat(40))), "{summary}");
}

#[test]
fn configuration_has_defaults_and_needs_both_webhook_settings() {
    let lookup = |pairs: &'static [(&'static str, &'static str)]| {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |name: &str| map.get(name).map(|v| (*v).to_owned())
    };
    let config = Config::from_lookup(lookup(&[])).unwrap();
    assert_eq!(config.whatsapp_addr.to_string(), "127.0.0.1:8091");
    assert_eq!(config.sms_addr.to_string(), "127.0.0.1:8092");
    assert_eq!((config.status_webhook, config.sms_status_webhook), (None, None));
    let config = Config::from_lookup(lookup(&[
        ("DW_FAKE_WHATSAPP_ADDR", "0.0.0.0:9091"),
        ("DW_FAKE_STATUS_WEBHOOK", "http://127.0.0.1:8083/webhooks/whatsapp/demo"),
        ("DW_FAKE_WHATSAPP_APP_SECRET", "s3cret"),
        ("DW_FAKE_WHATSAPP_PHONE_NUMBER_ID", "100000000000001"),
        ("DW_FAKE_SMS_STATUS_WEBHOOK", "http://127.0.0.1:8083/webhooks/sms/demo/status"),
        ("DW_FAKE_SMS_AUTH_TOKEN", "sms-s3cret"),
        ("DW_FAKE_STATUS_DELAY_MS", "50"),
        ("DW_FAKE_SMS_ADDR", ""),
    ]))
    .unwrap();
    assert_eq!(config.whatsapp_addr.to_string(), "0.0.0.0:9091");
    assert_eq!(config.sms_addr.to_string(), "127.0.0.1:8092");
    let printed = format!("{config:?}");
    assert!(!printed.contains("s3cret") && printed.contains("<redacted>"), "{printed}");
    let webhook = config.status_webhook.unwrap();
    assert_eq!(webhook.url, "http://127.0.0.1:8083/webhooks/whatsapp/demo");
    assert_eq!((webhook.app_secret.as_str(), webhook.delay), ("s3cret", Duration::from_millis(50)));
    assert_eq!(webhook.phone_number_id.as_deref(), Some("100000000000001"));
    assert_eq!(webhook.names("1055"), "100000000000001", "the configured tenant's number, whatever the send's");
    let by_send = StatusWebhook { phone_number_id: None, ..webhook.clone() };
    assert_eq!(by_send.names("1055"), "1055");
    let sms = config.sms_status_webhook.unwrap();
    assert_eq!(sms.url, "http://127.0.0.1:8083/webhooks/sms/demo/status");
    assert_eq!((sms.auth_token.as_str(), sms.delay), ("sms-s3cret", Duration::from_millis(50)));
    assert!(matches!(
        Config::from_lookup(lookup(&[("DW_FAKE_SMS_STATUS_WEBHOOK", "http://127.0.0.1:8083/x")])),
        Err(ConfigError::Incomplete { missing: "DW_FAKE_SMS_AUTH_TOKEN", .. })
    ));
    assert!(Config::from_lookup(lookup(&[("DW_FAKE_WHATSAPP_PHONE_NUMBER_ID", "+1555")])).is_err());
    assert!(matches!(
        Config::from_lookup(lookup(&[("DW_FAKE_STATUS_WEBHOOK", "http://127.0.0.1:8083/x")])),
        Err(ConfigError::Incomplete { missing: "DW_FAKE_WHATSAPP_APP_SECRET", .. })
    ));
    assert!(Config::from_lookup(lookup(&[("DW_FAKE_WHATSAPP_APP_SECRET", "s")])).is_err());
    assert!(Config::from_lookup(lookup(&[("DW_FAKE_SMS_ADDR", "localhost")])).is_err());
    assert!(Config::from_lookup(lookup(&[("DW_FAKE_STATUS_DELAY_MS", "soon")])).is_err());
    const FTP: [(&str, &str); 2] = [("DW_FAKE_STATUS_WEBHOOK", "ftp://x"), ("DW_FAKE_WHATSAPP_APP_SECRET", "s")];
    assert!(Config::from_lookup(lookup(&FTP)).is_err());
}

/// What the test's webhook receiver got: the path, the signature header (either kind) and the
/// raw body.
type Received = (String, String, String);

/// A receiver of `/webhooks/whatsapp/demo` and `/webhooks/sms/demo/status`; answers its base URL.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let record = move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let sender = sender.clone();
        async move {
            let signature = ["x-hub-signature-256", "x-twilio-signature"]
                .iter()
                .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
                .unwrap_or_default()
                .to_owned();
            let _ = sender.send((uri.path().to_owned(), signature, body));
            StatusCode::OK
        }
    };
    let app = Router::new()
        .route("/webhooks/whatsapp/demo", post(record.clone()))
        .route("/webhooks/sms/demo/status", post(record));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, receiver)
}

#[tokio::test]
async fn accepted_messages_get_ids_and_signed_delivered_then_read_webhooks() {
    let (receiver_base, mut received) = webhook_receiver().await;
    let whatsapp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sms = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (whatsapp_base, sms_base) =
        (format!("http://{}", whatsapp.local_addr().unwrap()), format!("http://{}", sms.local_addr().unwrap()));
    let delay = Duration::from_millis(20);
    let callbacks = Callbacks {
        whatsapp: Some(StatusWebhook {
            url: format!("{receiver_base}/webhooks/whatsapp/demo"),
            app_secret: "app-secret".into(),
            phone_number_id: None,
            delay,
        }),
        sms: Some(SmsStatusWebhook {
            url: format!("{receiver_base}/webhooks/sms/demo/status"),
            auth_token: "sms-auth-token".into(),
            delay,
        }),
    };
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(whatsapp, sms, callbacks, cancel.clone()));
    let http = reqwest::Client::new();

    let health = http.get(format!("{whatsapp_base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let response = http
        .post(format!("{whatsapp_base}/v21.0/100000000000001/messages"))
        .bearer_auth("token")
        .header("content-type", "application/json")
        .body(template_body("5511987654321"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["messaging_product"], "whatsapp");
    assert_eq!(answer["contacts"][0]["wa_id"], "5511987654321");
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid."), "{answer}");

    for expected in ["delivered", "read"] {
        let (path, signature, body) =
            tokio::time::timeout(Duration::from_secs(5), received.recv()).await.unwrap().unwrap();
        assert_eq!(path, "/webhooks/whatsapp/demo");
        assert_eq!(signature, hub_signature(b"app-secret", body.as_bytes()));
        let payload: Value = serde_json::from_str(&body).unwrap();
        let value = &payload["entry"][0]["changes"][0]["value"];
        assert_eq!(value["metadata"]["phone_number_id"], "100000000000001");
        let status = &value["statuses"][0];
        assert_eq!((status["id"].as_str(), status["status"].as_str()), (Some(wamid.as_str()), Some(expected)));
        assert_eq!(status["recipient_id"], "5511987654321");
        assert!(status["timestamp"].as_str().unwrap().parse::<i64>().unwrap() > 1_700_000_000);
    }

    let unauthorized = http
        .post(format!("{whatsapp_base}/v21.0/100000000000001/messages"))
        .body(template_body("5511987654321"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), received.recv()).await.is_err(),
        "no webhook for a refusal"
    );

    let sms_url = format!("{sms_base}/2010-04-01/Accounts/AC1/Messages.json");
    let form = [("To", "+5511987654321"), ("From", "+15550000001"), ("Body", "Lembrete: consulta às 10h")];
    let response = http.post(&sms_url).basic_auth("AC1", Some("token")).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["sid"].as_str().unwrap().starts_with("SM"), "{answer}");
    assert_eq!(
        (answer["status"].as_str(), answer["body"].as_str()),
        (Some("queued"), Some("Lembrete: consulta às 10h"))
    );
    let sms_sid = answer["sid"].as_str().unwrap().to_owned();
    let (path, signature, body) = tokio::time::timeout(Duration::from_secs(5), received.recv()).await.unwrap().unwrap();
    assert_eq!(path, "/webhooks/sms/demo/status");
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signed_url = format!("{receiver_base}/webhooks/sms/demo/status");
    assert_eq!(signature, twilio_signature("sms-auth-token", &signed_url, &params));
    let verify = messaging_templates::domain::twilio_signature::verify;
    assert!(verify("sms-auth-token", &signed_url, &params, Some(&signature)), "as messaging-templates checks it");
    let callback: HashMap<String, String> = params.into_iter().collect();
    let field = |name: &str| callback.get(name).map(String::as_str);
    assert_eq!((field("AccountSid"), field("MessageStatus")), (Some("AC1"), Some("delivered")));
    assert_eq!((field("MessageSid"), field("To")), (Some(sms_sid.as_str()), Some("+5511987654321")));
    let response = http.post(&sms_url).basic_auth("AC2", Some("token")).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = http.post(format!("{sms_base}/elsewhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}
