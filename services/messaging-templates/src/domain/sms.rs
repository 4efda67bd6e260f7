//! SMS encoding and segment count (GSM 03.38 and UCS-2), as the carriers count them.

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: an escape septet plus one, so two septets each.
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{000C}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// How an SMS text travels: its encoding, length in that encoding's units, and segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    pub encoding: Encoding,
    /// GSM-7 septets or UCS-2 code units.
    pub units: usize,
    pub segments: usize,
}

/// The septets of each character, or `None` when one is not in GSM 03.38.
fn gsm7_widths(text: &str) -> Option<Vec<usize>> {
    text.chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .collect()
}

/// Segments of at most `capacity` units, filled in order; a character whose units do not fit in
/// what is left of a segment starts the next one (carriers never split an escape sequence or a
/// surrogate pair across two segments).
fn concatenated_segments(widths: &[usize], capacity: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for &width in widths {
        if used + width > capacity {
            segments += 1;
            used = 0;
        }
        used += width;
    }
    segments
}

pub fn analyze(text: &str) -> Analysis {
    let (encoding, widths, single, multi) = match gsm7_widths(text) {
        Some(widths) => (Encoding::Gsm7, widths, 160, 153),
        None => (Encoding::Ucs2, text.chars().map(char::len_utf16).collect(), 70, 67),
    };
    let units = widths.iter().sum();
    let segments = if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        concatenated_segments(&widths, multi)
    };
    Analysis { encoding, units, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_gsm7_with_160_then_153_per_segment() {
        assert_eq!(analyze(""), Analysis { encoding: Encoding::Gsm7, units: 0, segments: 0 });
        assert_eq!(analyze(&"a".repeat(160)).segments, 1);
        assert_eq!(analyze(&"a".repeat(161)).segments, 2);
        assert_eq!(analyze(&"a".repeat(306)).segments, 2);
        assert_eq!(analyze(&"a".repeat(307)).segments, 3);
        assert_eq!(analyze("Olá, João! Seu pedido é 42.").encoding, Encoding::Ucs2, "ã and á are not GSM-7");
        assert_eq!(analyze("Hola, qué tal? Año, Ñoño, Müller.").encoding, Encoding::Gsm7);
        assert_eq!(analyze("Ñandú").encoding, Encoding::Ucs2, "ú is not in GSM-7 (ù is)");
    }

    #[test]
    fn extension_characters_count_twice() {
        let analysis = analyze("Price: 10€ [promo]");
        assert_eq!(analysis.encoding, Encoding::Gsm7);
        assert_eq!(analysis.units, 18 + 3, "€, [ and ] take two septets each");
        let text = "€".repeat(80);
        assert_eq!(analyze(&text).units, 160);
        assert_eq!(analyze(&text).segments, 1);
        assert_eq!(analyze(&format!("{text}€")).segments, 2);
    }

    #[test]
    fn emoji_force_ucs2_and_count_as_two_units() {
        let analysis = analyze("Obrigado 😀");
        assert_eq!(analysis.encoding, Encoding::Ucs2);
        assert_eq!(analysis.units, 9 + 2);
        assert_eq!(analyze(&"x".repeat(69).replace('x', "é")).encoding, Encoding::Gsm7);
        let seventy = format!("{}😀", "ç".repeat(68));
        assert_eq!((analyze(&seventy).units, analyze(&seventy).segments), (70, 1));
        let more = format!("{seventy}a");
        assert_eq!(analyze(&more).segments, 2);
        assert_eq!(analyze(&"😀".repeat(67)).segments, 3, "33 emoji (66 units) per segment: a pair is never split");
    }

    #[test]
    fn a_character_never_straddles_two_segments() {
        // 152 septets, then € (escape + 1) does not fit in the 153rd: it opens segment 2.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(analyze(&text).units, 306);
        assert_eq!(analyze(&text).segments, 3, "152 | € + 151 | 1, not 306 / 153 = 2");
        assert_eq!(analyze(&"{".repeat(50_000)).segments, 658, "76 extension characters per segment");
    }
}
