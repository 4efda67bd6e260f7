//! Rendering a template as a send would: the variables and header override checked against the
//! template, and for SMS the encoding and segment count. The same checks guard a send.

use super::sms::{self, Analysis};
use super::template::{
    Channel, HeaderKind, Problem, Template, WHATSAPP_BODY_MAX, WHATSAPP_HEADER_TEXT_MAX, parse_url, render,
};

/// A variable's value: at most 1,024 characters, no newlines (WhatsApp's rule; kept for SMS too).
const VARIABLE_MAX: usize = 1024;

/// The default [`Limits::sms_max_segments`].
pub const DEFAULT_SMS_MAX_SEGMENTS: usize = 10;

/// Bounds on what a send may render, set per deployment: what one template and its variables
/// may grow to (a template of 320 placeholders with long values would otherwise render a
/// megabyte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segments of a rendered SMS (`DW_SMS_MAX_SEGMENTS`).
    pub sms_max_segments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { sms_max_segments: DEFAULT_SMS_MAX_SEGMENTS }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub header_text: Option<String>,
    pub header_image_url: Option<String>,
    pub body: String,
    pub footer: Option<String>,
    pub problems: Vec<Problem>,
    /// SMS only.
    pub sms: Option<Analysis>,
}

pub fn render_send(
    template: &Template,
    variables: &[String],
    header_text: Option<&str>,
    header_image_url: Option<&str>,
    limits: &Limits,
) -> Rendered {
    let content = &template.content;
    let mut problems: Vec<Problem> = Vec::new();
    if template.archived {
        problems.push(("template_id".into(), "the template is archived".into()));
    }
    if variables.len() != content.variable_count {
        problems.push((
            "variables".into(),
            format!("the template has {} variables, {} given", content.variable_count, variables.len()),
        ));
    }
    for (index, value) in variables.iter().enumerate() {
        if value.trim().is_empty() || value.chars().count() > VARIABLE_MAX || value.contains(['\n', '\r']) {
            problems.push((format!("variables[{index}]"), format!("must be 1-{VARIABLE_MAX} characters on one line")));
        }
    }
    let header_text = header_text.filter(|t| !t.trim().is_empty());
    let header_image_url = header_image_url.filter(|t| !t.trim().is_empty());
    if header_text.is_some() && content.header_kind != HeaderKind::Text {
        problems.push(("header_text".into(), "the template does not allow a text header".into()));
    }
    if header_image_url.is_some() && content.header_kind != HeaderKind::Image {
        problems.push(("header_image_url".into(), "the template does not allow an image header".into()));
    }
    let final_header_text = if content.header_kind == HeaderKind::Text {
        header_text.map(str::to_owned).or(content.header_text.clone())
    } else {
        None
    };
    if final_header_text.as_ref().is_some_and(|t| t.chars().count() > WHATSAPP_HEADER_TEXT_MAX) {
        problems.push(("header_text".into(), format!("at most {WHATSAPP_HEADER_TEXT_MAX} characters")));
    }
    let final_image = if content.header_kind == HeaderKind::Image {
        match header_image_url {
            Some(url) => match parse_url(url) {
                Ok(url) => Some(url),
                Err(reason) => {
                    problems.push(("header_image_url".into(), reason));
                    None
                }
            },
            None => content.header_image_url.clone(),
        }
    } else {
        None
    };
    if content.header_kind == HeaderKind::Image && final_image.is_none() && header_image_url.is_none() {
        problems.push(("header_image_url".into(), "the template needs an image header".into()));
    }
    let body = render(&content.body, variables);
    let sms = match template.channel {
        Channel::Sms => {
            let analysis = sms::analyze(&body);
            if analysis.segments > limits.sms_max_segments {
                problems.push((
                    "variables".into(),
                    format!(
                        "the rendered SMS is {} segments, over the limit of {}",
                        analysis.segments, limits.sms_max_segments
                    ),
                ));
            }
            Some(analysis)
        }
        Channel::Whatsapp => {
            if body.chars().count() > WHATSAPP_BODY_MAX {
                problems
                    .push(("variables".into(), format!("the rendered body exceeds {WHATSAPP_BODY_MAX} characters")));
            }
            None
        }
    };
    Rendered {
        header_text: final_header_text,
        header_image_url: final_image,
        body,
        footer: content.footer.clone(),
        problems,
        sms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::{Category, Content, ContentInput};

    fn template(channel: Channel, input: ContentInput) -> Template {
        let now = chrono::Utc::now();
        Template {
            template_id: uuid::Uuid::now_v7(),
            channel,
            name: "t".into(),
            content: Content::parse(channel, input, "").unwrap(),
            archived: false,
            created_at: now,
            updated_at: now,
        }
    }

    fn base(body: &str) -> ContentInput {
        ContentInput {
            language: "pt_BR".into(),
            category: Some(Category::Utility),
            body: body.into(),
            ..Default::default()
        }
    }

    fn fields(rendered: &Rendered) -> Vec<&str> {
        rendered.problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn variables_must_match_the_template() {
        let t = template(Channel::Whatsapp, base("Olá {{1}}, pedido {{2}}"));
        let ok = render_send(&t, &["Ana".into(), "42".into()], None, None, &Limits::default());
        assert_eq!((ok.body.as_str(), ok.problems.len()), ("Olá Ana, pedido 42", 0));
        assert_eq!(fields(&render_send(&t, &["Ana".into()], None, None, &Limits::default())), ["variables"]);
        assert_eq!(
            fields(&render_send(&t, &["Ana".into(), "a\nb".into()], None, None, &Limits::default())),
            ["variables[1]"]
        );
    }

    #[test]
    fn headers_follow_the_template_kind() {
        let image = ContentInput { header_kind: Some(HeaderKind::Image), ..base("Oi") };
        let t = template(Channel::Whatsapp, image);
        assert_eq!(
            fields(&render_send(&t, &[], None, None, &Limits::default())),
            ["header_image_url"],
            "an image is needed"
        );
        let sent = render_send(&t, &[], None, Some("https://cdn.example.com/p.png"), &Limits::default());
        assert_eq!(sent.header_image_url.as_deref(), Some("https://cdn.example.com/p.png"));
        assert_eq!(fields(&render_send(&t, &[], None, Some("ftp://x"), &Limits::default())), ["header_image_url"]);
        assert_eq!(
            fields(&render_send(&t, &[], Some("Title"), Some("https://x.example/a.png"), &Limits::default())),
            ["header_text"]
        );
        let text = template(
            Channel::Whatsapp,
            ContentInput { header_kind: Some(HeaderKind::Text), header_text: "Pedido".into(), ..base("Oi") },
        );
        assert_eq!(render_send(&text, &[], None, None, &Limits::default()).header_text.as_deref(), Some("Pedido"));
        assert_eq!(fields(&render_send(&text, &[], Some(&"x".repeat(61)), None, &Limits::default())), ["header_text"]);
    }

    #[test]
    fn sms_previews_report_encoding_and_segments() {
        let t = template(Channel::Sms, base("Seu código é {{1}}"));
        let rendered = render_send(&t, &["1234 😀".into()], None, None, &Limits::default());
        let analysis = rendered.sms.unwrap();
        assert_eq!(analysis.encoding, sms::Encoding::Ucs2);
        assert_eq!(analysis.segments, 1);
    }

    #[test]
    fn given_a_template_of_repeated_placeholders_when_long_values_render_past_the_segment_limit_then_the_send_is_refused()
     {
        let t = template(Channel::Sms, base(&"{{1}}".repeat(320)));
        let long = render_send(&t, &["x".repeat(1024)], None, None, &Limits::default());
        assert_eq!(fields(&long), ["variables"]);
        assert!(long.problems[0].1.contains("over the limit of 10"), "{:?}", long.problems);

        let short = render_send(&t, &["x".into()], None, None, &Limits::default());
        assert!(short.problems.is_empty(), "320 characters are 3 segments: {:?}", short.problems);
        let strict = render_send(&t, &["x".into()], None, None, &Limits { sms_max_segments: 2 });
        assert_eq!(fields(&strict), ["variables"]);
    }
}
