//! How templates print: one template, a page of templates, a preview.

use chrono::{DateTime, Utc};
use dw_proto::messaging::v1::{
    HeaderKind, ListTemplatesResponse, PreviewTemplateResponse, SmsEncoding, Template, TemplateCategory,
};

use super::{channel, metadata};
use crate::output::{self as out, or_dash};
use crate::paging;

/// `utility`, `marketing`, `authentication`.
pub fn category(value: i32) -> String {
    out::enum_name_or_dash(value, "TEMPLATE_CATEGORY_", TemplateCategory::as_str_name)
}

/// `none`, `text`, `image`.
pub fn header(value: i32) -> String {
    // The zero value is `HEADER_KIND_UNSPECIFIED` (buf's rule for zero values): no header.
    if value == HeaderKind::Unspecified as i32 {
        return "none".to_owned();
    }
    out::enum_name(value, "HEADER_KIND_", HeaderKind::as_str_name)
}

/// `GSM-7`, `UCS-2`.
pub fn encoding(value: i32) -> String {
    match SmsEncoding::try_from(value) {
        Ok(SmsEncoding::Gsm7) => "GSM-7".to_owned(),
        Ok(SmsEncoding::Ucs2) => "UCS-2".to_owned(),
        Ok(SmsEncoding::Unspecified) => "-".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

pub fn template_text(template: &Template, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("template", template.template_id.clone()),
        ("name", template.name.clone()),
        ("channel", channel(template.channel)),
        ("language", or_dash(&template.language)),
        ("category", category(template.category)),
    ];
    match HeaderKind::try_from(template.header_kind) {
        Ok(HeaderKind::Text) => rows.push(("header", format!("text: {}", or_dash(&template.header_text)))),
        Ok(HeaderKind::Image) => rows.push(("header", format!("image: {}", or_dash(&template.header_image_url)))),
        _ => rows.push(("header", "none".to_owned())),
    }
    rows.push(("body", template.body.clone()));
    rows.push(("variables", template.variable_count.to_string()));
    rows.push(("footer", or_dash(&template.footer)));
    rows.push(("department", or_dash(&template.department_id)));
    rows.push(("webhook", or_dash(&template.default_webhook_url)));
    rows.push(("metadata", metadata(&template.default_metadata)));
    rows.push(("archived", out::yes_no(template.archived).to_owned()));
    rows.push(("version", template.version.to_string()));
    rows.push(("updated", out::timestamp_ago(template.updated_at.as_ref(), now)));
    out::fields(&rows)
}

const TEMPLATE_HEADER: [&str; 9] =
    ["NAME", "CHANNEL", "LANGUAGE", "CATEGORY", "HEADER", "VARS", "DEPARTMENT", "STATE", "TEMPLATE"];

pub fn list_text(list: &ListTemplatesResponse) -> String {
    let table = out::table_of(&TEMPLATE_HEADER, &list.templates, |t| {
        vec![
            t.name.clone(),
            channel(t.channel),
            or_dash(&t.language),
            category(t.category),
            header(t.header_kind),
            t.variable_count.to_string(),
            or_dash(&t.department_id),
            if t.archived { "archived".to_owned() } else { "active".to_owned() },
            t.template_id.clone(),
        ]
    });
    table + &paging::next_page_line(&list.next_page_token)
}

pub fn preview_text(preview: &PreviewTemplateResponse) -> String {
    let mut text = String::new();
    if !preview.rendered_header.is_empty() {
        text.push_str(&format!("header  {}\n", preview.rendered_header));
    }
    text.push_str("body\n");
    text.push_str(&out::indent(&preview.rendered_body, 2));
    text.push('\n');
    if !preview.footer.is_empty() {
        text.push_str(&format!("footer  {}\n", preview.footer));
    }
    if preview.sms_encoding != SmsEncoding::Unspecified as i32 {
        let unit = if preview.sms_encoding == SmsEncoding::Ucs2 as i32 { "UCS-2 code units" } else { "septets" };
        text.push_str(&format!(
            "sms     {} · {} {unit} · {} segment{}\n",
            encoding(preview.sms_encoding),
            preview.sms_units,
            preview.sms_segments,
            if preview.sms_segments == 1 { "" } else { "s" }
        ));
    }
    if preview.problems.is_empty() {
        text.push_str("ok: a send with these values would be accepted\n");
    } else {
        text.push_str("problems:\n");
        for problem in &preview.problems {
            text.push_str(&format!("  {}: {}\n", or_dash(&problem.field), problem.description));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::messaging::v1::PreviewProblem;

    #[test]
    fn sms_previews_show_encoding_units_and_segments() {
        let preview = PreviewTemplateResponse {
            rendered_body: "Seu codigo de verificacao e 123456".into(),
            sms_encoding: SmsEncoding::Gsm7 as i32,
            sms_units: 34,
            sms_segments: 1,
            ..Default::default()
        };
        let text = preview_text(&preview);
        assert!(text.contains("body\n  Seu codigo de verificacao e 123456\n"), "{text}");
        assert!(text.contains("sms     GSM-7 · 34 septets · 1 segment\n"), "{text}");
        assert!(text.ends_with("ok: a send with these values would be accepted\n"), "{text}");
        let preview = PreviewTemplateResponse {
            rendered_header: "https://images.example.com/box.jpg".into(),
            rendered_body: "Olá {{1}}".into(),
            footer: "Acme".into(),
            problems: vec![PreviewProblem {
                field: "variables".into(),
                description: "expected 2 values, got 1".into(),
            }],
            ..Default::default()
        };
        let text = preview_text(&preview);
        assert!(text.starts_with("header  https://images.example.com/box.jpg\n"), "{text}");
        assert!(text.contains("footer  Acme\n") && !text.contains("sms "), "{text}");
        assert!(text.contains("problems:\n  variables: expected 2 values, got 1\n"), "{text}");
        let emoji = PreviewTemplateResponse {
            sms_encoding: SmsEncoding::Ucs2 as i32,
            sms_units: 140,
            sms_segments: 3,
            ..Default::default()
        };
        assert!(preview_text(&emoji).contains("sms     UCS-2 · 140 UCS-2 code units · 3 segments\n"));
    }
}
