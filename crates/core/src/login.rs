//! The login event as producers send it: parsing, validation and `app_version` encoding.
//!
//! Everything here is pure. Rejection reasons name the field and the rule that failed, never the
//! value: a reason ends up in logs, and values such as `ip` and `device_id` are personal data.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Column limits of `user_logins`, in characters (PostgreSQL's `varchar(n)` counts characters).
pub(crate) const USER_ID_MAX_CHARS: usize = 128;
pub(crate) const DEVICE_TYPE_MAX_CHARS: usize = 32;
pub(crate) const LOCALE_MAX_CHARS: usize = 32;
/// `device_id` is stored only as its mask, so no column bounds it; this cap keeps a hostile
/// producer from making us hash megabytes, and is far above any real device id.
pub(crate) const DEVICE_ID_MAX_CHARS: usize = 256;
/// An IPv6 address with an embedded IPv4 tail is at most 45 characters; anything longer is not an
/// address, so we refuse it before parsing.
const IP_MAX_CHARS: usize = 64;

/// A valid login event, borrowed from the message body where JSON escapes allow. Every text
/// field has its surrounding whitespace trimmed; `ip` is canonical (an IPv4-mapped IPv6 address
/// is folded to its IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEvent<'a> {
    pub user_id: Cow<'a, str>,
    pub device_type: Cow<'a, str>,
    pub ip: IpAddr,
    pub device_id: Cow<'a, str>,
    /// `None` when absent, `null` or empty.
    pub locale: Option<Cow<'a, str>>,
    pub app_version: AppVersion,
}

/// Why a message body is not a storable login event. Display says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    EmptyBody,
    NotJson {
        detail: String,
    },
    NotAnObject,
    DuplicateField(String),
    MissingField(&'static str),
    WrongType {
        field: &'static str,
        found: &'static str,
    },
    Empty(&'static str),
    TooLong {
        field: &'static str,
        max_chars: usize,
    },
    ControlCharacter(&'static str),
    BadIp,
    BadAppVersion,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::EmptyBody => write!(f, "message body is empty"),
            Rejection::NotJson { detail } => write!(f, "message body is not valid JSON ({detail})"),
            Rejection::NotAnObject => write!(f, "message body is not a JSON object"),
            Rejection::DuplicateField(field) => write!(f, "field `{field}` appears twice"),
            Rejection::MissingField(field) => write!(f, "required field `{field}` is missing"),
            Rejection::WrongType { field, found } => {
                write!(f, "field `{field}` must be a string, found {found}")
            }
            Rejection::Empty(field) => write!(f, "field `{field}` is empty"),
            Rejection::TooLong { field, max_chars } => {
                write!(f, "field `{field}` is longer than {max_chars} characters")
            }
            Rejection::ControlCharacter(field) => {
                write!(f, "field `{field}` contains a NUL or other control character")
            }
            Rejection::BadIp => write!(f, "field `ip` is not an IPv4 or IPv6 address"),
            Rejection::BadAppVersion => write!(
                f,
                "field `app_version` must be 1 to 3 dot-separated numbers of 0..=999, like \"2.3.0\""
            ),
        }
    }
}

impl std::error::Error for Rejection {}

/// `app_version` encoded as `major*1_000_000 + minor*1_000 + patch`, so it fits the original
/// integer column and orders like the version ("2.3.0" -> 2003000, "0.96" -> 96000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppVersion(i32);

impl AppVersion {
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let mut encoded: i32 = 0;
        let mut parts = 0;
        for part in text.trim().split('.') {
            parts += 1;
            let valid = (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
            if !valid || parts > 3 {
                return Err(Rejection::BadAppVersion);
            }
            let number: i32 = part.parse().map_err(|_| Rejection::BadAppVersion)?;
            encoded = encoded * 1_000 + number;
        }
        // Missing minor/patch parts count as zero: "3.7" is 3.7.0.
        for _ in parts..3 {
            encoded *= 1_000;
        }
        Ok(AppVersion(encoded))
    }

    pub fn encoded(self) -> i32 {
        self.0
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(f, "{}.{}.{}", v / 1_000_000, (v / 1_000) % 1_000, v % 1_000)
    }
}

impl<'a> LoginEvent<'a> {
    /// Parses and validates one message body.
    pub fn parse(body: &'a str) -> Result<Self, Rejection> {
        let first = body.trim_start().bytes().next();
        match first {
            None => return Err(Rejection::EmptyBody),
            // Checked before serde: a derived struct would also accept a JSON array positionally.
            Some(b'{') => {}
            Some(_) if serde_json::from_str::<IgnoredAny>(body).is_ok() => {
                return Err(Rejection::NotAnObject)
            }
            Some(_) => {
                return Err(not_json(
                    serde_json::from_str::<IgnoredAny>(body).unwrap_err(),
                ))
            }
        }
        let raw: RawLogin<'a> = serde_json::from_str(body).map_err(not_json)?;
        raw.validate()
    }
}

/// serde_json's syntax errors name a position, never the input; its data errors can quote a
/// value, so only the duplicate-field one (which quotes a field name) is passed through.
fn not_json(error: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            let message = error.to_string();
            match message.strip_prefix("duplicate field `") {
                Some(rest) => {
                    Rejection::DuplicateField(rest.split('`').next().unwrap_or("").into())
                }
                None => Rejection::NotAnObject,
            }
        }
        Category::Eof => Rejection::NotJson {
            detail: "it ends early".into(),
        },
        Category::Syntax | Category::Io => Rejection::NotJson {
            detail: format!("line {} column {}", error.line(), error.column()),
        },
    }
}

/// The body as sent: every field optional and of any JSON type, so that validation, not serde,
/// decides what is wrong and says it without quoting values.
#[derive(Deserialize)]
struct RawLogin<'a> {
    #[serde(borrow, default)]
    user_id: JsonText<'a>,
    #[serde(borrow, default)]
    app_version: JsonText<'a>,
    #[serde(borrow, default)]
    device_type: JsonText<'a>,
    #[serde(borrow, default)]
    ip: JsonText<'a>,
    #[serde(borrow, default)]
    locale: JsonText<'a>,
    #[serde(borrow, default)]
    device_id: JsonText<'a>,
}

impl<'a> RawLogin<'a> {
    fn validate(self) -> Result<LoginEvent<'a>, Rejection> {
        let user_id = required_text("user_id", self.user_id, USER_ID_MAX_CHARS)?;
        let device_type = required_text("device_type", self.device_type, DEVICE_TYPE_MAX_CHARS)?;
        let app_version = AppVersion::parse(&required_text("app_version", self.app_version, 32)?)?;
        let ip_text = required_text("ip", self.ip, IP_MAX_CHARS)?;
        let ip = ip_text
            .parse::<IpAddr>()
            .map_err(|_| Rejection::BadIp)?
            // `::ffff:1.2.3.4` is the IPv4 address 1.2.3.4 as an IPv6 socket reports it: the same
            // address, so the same mask (README.md, "What it does with a message").
            .to_canonical();
        let device_id = required_text("device_id", self.device_id, DEVICE_ID_MAX_CHARS)?;
        let locale = optional_text("locale", self.locale, LOCALE_MAX_CHARS)?;
        Ok(LoginEvent {
            user_id,
            device_type,
            ip,
            device_id,
            locale,
            app_version,
        })
    }
}

/// A required text field, with surrounding whitespace trimmed: the one rule for every field.
/// Producers pad values by accident (`" RU"`, `"abc\n"`), and the padded and the plain value
/// are the same user, device or address, so they must store and mask the same. What is left must
/// be non-empty, within `max_chars`, and free of control characters.
fn required_text<'a>(
    field: &'static str,
    value: JsonText<'a>,
    max_chars: usize,
) -> Result<Cow<'a, str>, Rejection> {
    let text = match value {
        JsonText::Text(text) => trimmed(text),
        JsonText::Absent | JsonText::Null => return Err(Rejection::MissingField(field)),
        JsonText::Other(found) => return Err(Rejection::WrongType { field, found }),
    };
    if text.is_empty() {
        return Err(Rejection::Empty(field));
    }
    // Byte length bounds character count from above, so the exact count is only needed when the
    // text is long in bytes (multi-byte characters).
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Rejection::TooLong { field, max_chars });
    }
    // PostgreSQL text cannot hold NUL, and control characters in ids are never legitimate.
    if has_control_character(&text) {
        return Err(Rejection::ControlCharacter(field));
    }
    Ok(text)
}

/// An optional text field: absent, `null` and empty (after trimming) all mean unknown, `None`.
fn optional_text<'a>(
    field: &'static str,
    value: JsonText<'a>,
    max_chars: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        JsonText::Absent | JsonText::Null => Ok(None),
        JsonText::Text(text) if text.trim().is_empty() => Ok(None),
        other => required_text(field, other, max_chars).map(Some),
    }
}

/// `text.chars().any(char::is_control)`, on bytes: the control characters are U+0000..=U+001F,
/// U+007F and U+0080..=U+009F, which UTF-8 spells 0x00..=0x1F, 0x7F and 0xC2 0x80..=0xC2 0x9F.
fn has_control_character(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &byte)| {
        byte < 0x20
            || byte == 0x7f
            || (byte == 0xc2
                && bytes
                    .get(i + 1)
                    .is_some_and(|next| (0x80..=0x9f).contains(next)))
    })
}

fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    }
}

/// A JSON field value reduced to what validation needs: a string, or what kind of thing it was.
#[derive(Debug, Default)]
enum JsonText<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value: JsonText<'de> = deserializer.deserialize_any(JsonTextVisitor)?;
        Ok(value)
    }
}

struct JsonTextVisitor;

impl<'de> Visitor<'de> for JsonTextVisitor {
    type Value = JsonText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonText::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonText::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonText::Text(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0",
        "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"}"#;

    fn with_field(field: &str, json_value: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        value[field] = serde_json::from_str(json_value).unwrap();
        value.to_string()
    }

    fn without_field(field: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        value.as_object_mut().unwrap().remove(field);
        value.to_string()
    }

    #[test]
    fn finds_control_characters_exactly_as_char_is_control_does() {
        let mut texts: Vec<String> = (0u32..0x800)
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!("ab{c}"), format!("{c}é\u{2028}z")])
            .collect();
        texts.extend(["", "plain", "ünïcödé", "\u{85}", "\u{a0}", "¡¿"].map(String::from));
        for text in &texts {
            assert_eq!(
                has_control_character(text),
                text.chars().any(char::is_control),
                "{text:?}"
            );
        }
    }

    #[test]
    fn parses_the_sample_event() {
        let event = LoginEvent::parse(GOOD).unwrap();
        assert_eq!(event.user_id, "424cdd21-063a-43a7-b91b-7ca1a833afae");
        assert_eq!(event.device_type, "android");
        assert_eq!(event.ip, "199.172.111.135".parse::<IpAddr>().unwrap());
        assert_eq!(event.device_id, "593-47-5928");
        assert_eq!(event.locale.as_deref(), Some("RU"));
        assert_eq!(event.app_version.encoded(), 2_003_000);
    }

    #[test]
    fn borrows_from_the_body_when_there_are_no_escapes() {
        let event = LoginEvent::parse(GOOD).unwrap();
        assert!(matches!(event.user_id, Cow::Borrowed(_)));
        assert!(matches!(event.device_id, Cow::Borrowed(_)));
    }

    #[test]
    fn locale_null_absent_or_empty_is_unknown() {
        for value in ["null", r#""""#, r#""   ""#] {
            assert_eq!(
                LoginEvent::parse(&with_field("locale", value))
                    .unwrap()
                    .locale,
                None,
                "{value}"
            );
        }
        assert_eq!(
            LoginEvent::parse(&without_field("locale")).unwrap().locale,
            None
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = with_field("extra", r#"{"nested": [1, 2, {"x": null}]}"#);
        assert!(LoginEvent::parse(&body).is_ok());
    }

    #[test]
    fn encodes_app_versions_as_the_contract_says() {
        for (text, encoded) in [
            ("2.3.0", 2_003_000),
            ("0.96", 96_000),
            ("2.00", 2_000_000),
            ("9.10", 9_010_000),
            ("3.7", 3_007_000),
            ("5", 5_000_000),
            ("999.999.999", 999_999_999),
            (" 2.3.0 ", 2_003_000),
        ] {
            assert_eq!(
                AppVersion::parse(text).unwrap().encoded(),
                encoded,
                "{text}"
            );
        }
    }

    #[test]
    fn decodes_app_versions_back_to_text() {
        assert_eq!(AppVersion::parse("0.96").unwrap().to_string(), "0.96.0");
        assert_eq!(AppVersion::parse("2.3.0").unwrap().to_string(), "2.3.0");
    }

    #[test]
    fn rejects_app_versions_outside_the_encoding() {
        for text in [
            "",
            "1000.0",
            "1..2",
            "1.2.3.4",
            "v2",
            "2.3.0-beta",
            "-1.0",
            "1.2.",
            "١.٢",
        ] {
            assert_eq!(
                AppVersion::parse(text),
                Err(Rejection::BadAppVersion),
                "{text:?}"
            );
        }
    }

    #[test]
    fn app_versions_order_like_versions() {
        let v = |t| AppVersion::parse(t).unwrap();
        assert!(v("0.96") < v("2.00"));
        assert!(v("2.3.0") < v("2.10"));
        assert!(v("9.10") > v("9.9.999"));
    }

    #[test]
    fn rejects_bodies_that_are_not_login_events() {
        let cases: &[(&str, Rejection)] = &[
            ("", Rejection::EmptyBody),
            ("   ", Rejection::EmptyBody),
            (
                "not json",
                Rejection::NotJson {
                    detail: "line 1 column 2".into(),
                },
            ),
            ("[1, 2, 3]", Rejection::NotAnObject),
            ("\"a string\"", Rejection::NotAnObject),
            ("42", Rejection::NotAnObject),
            (
                r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#,
                Rejection::MissingField("user_id"),
            ),
            (
                r#"{"user_id": "a""#,
                Rejection::NotJson {
                    detail: "it ends early".into(),
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(&LoginEvent::parse(body).unwrap_err(), expected, "{body:?}");
        }
    }

    #[test]
    fn names_the_missing_field() {
        for field in ["user_id", "app_version", "device_type", "ip", "device_id"] {
            assert_eq!(
                LoginEvent::parse(&without_field(field)).unwrap_err(),
                Rejection::MissingField(field)
            );
            assert_eq!(
                LoginEvent::parse(&with_field(field, "null")).unwrap_err(),
                Rejection::MissingField(field)
            );
        }
    }

    #[test]
    fn names_the_field_of_the_wrong_type() {
        let err = LoginEvent::parse(&with_field("app_version", "2.3")).unwrap_err();
        assert_eq!(
            err,
            Rejection::WrongType {
                field: "app_version",
                found: "a number"
            }
        );
        let err = LoginEvent::parse(&with_field("device_id", "593475928")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `device_id` must be a string, found a number"
        );
        let err = LoginEvent::parse(&with_field("locale", r#"["RU"]"#)).unwrap_err();
        assert_eq!(
            err,
            Rejection::WrongType {
                field: "locale",
                found: "an array"
            }
        );
    }

    #[test]
    fn enforces_column_lengths_in_characters() {
        let long = format!("\"{}\"", "x".repeat(33));
        assert_eq!(
            LoginEvent::parse(&with_field("device_type", &long)).unwrap_err(),
            Rejection::TooLong {
                field: "device_type",
                max_chars: 32
            }
        );
        // 32 two-byte characters fit varchar(32) even though they are 64 bytes.
        let wide = format!("\"{}\"", "é".repeat(32));
        assert!(LoginEvent::parse(&with_field("device_type", &wide)).is_ok());
        let long_user = format!("\"{}\"", "u".repeat(129));
        assert_eq!(
            LoginEvent::parse(&with_field("user_id", &long_user)).unwrap_err(),
            Rejection::TooLong {
                field: "user_id",
                max_chars: 128
            }
        );
    }

    #[test]
    fn rejects_addresses_that_are_not_ips() {
        for ip in [
            r#""999.1.1.1""#,
            r#""01.2.3.4""#,
            r#""localhost""#,
            r#""1.2.3""#,
        ] {
            assert_eq!(
                LoginEvent::parse(&with_field("ip", ip)).unwrap_err(),
                Rejection::BadIp,
                "{ip}"
            );
        }
    }

    #[test]
    fn trims_surrounding_whitespace_from_every_text_field() {
        for (field, padded, plain) in [
            ("user_id", "\" u-1\\t\"", "u-1"),
            ("device_type", "\"ios \"", "ios"),
            ("locale", "\"\\nRU \"", "RU"),
            ("device_id", "\"  593-47-5928 \"", "593-47-5928"),
        ] {
            let body = with_field(field, padded);
            let event = LoginEvent::parse(&body).unwrap();
            let stored = match field {
                "user_id" => event.user_id,
                "device_type" => event.device_type,
                "locale" => event.locale.unwrap(),
                _ => event.device_id,
            };
            assert_eq!(stored, plain, "{field}");
        }
        let body = with_field("app_version", "\" 2.3.0 \"");
        let event = LoginEvent::parse(&body).unwrap();
        assert_eq!(event.app_version.encoded(), 2_003_000);
        assert_eq!(
            LoginEvent::parse(&with_field("user_id", "\" \\t \"")).unwrap_err(),
            Rejection::Empty("user_id")
        );
    }

    #[test]
    fn folds_ipv4_mapped_addresses_to_ipv4() {
        let body = with_field("ip", r#""::ffff:199.172.111.135""#);
        let event = LoginEvent::parse(&body).unwrap();
        assert_eq!(event.ip, "199.172.111.135".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn accepts_ipv6_and_surrounding_whitespace() {
        let body = with_field("ip", r#"" 2001:DB8::1 ""#);
        let event = LoginEvent::parse(&body).unwrap();
        assert_eq!(event.ip.to_string(), "2001:db8::1");
        let body = with_field("device_id", r#""  593-47-5928 ""#);
        let event = LoginEvent::parse(&body).unwrap();
        assert_eq!(event.device_id, "593-47-5928");
    }

    #[test]
    fn rejects_nul_and_control_characters() {
        let err = LoginEvent::parse(&with_field("user_id", r#""ab\u0000c""#)).unwrap_err();
        assert_eq!(err, Rejection::ControlCharacter("user_id"));
    }

    #[test]
    fn reports_duplicate_keys_by_name() {
        let body = r#"{"user_id": "a", "user_id": "b", "app_version": "1", "device_type": "ios",
            "ip": "1.2.3.4", "device_id": "d"}"#;
        assert_eq!(
            LoginEvent::parse(body).unwrap_err(),
            Rejection::DuplicateField("user_id".into())
        );
    }

    #[test]
    fn rejection_messages_never_quote_values() {
        let secret_ip = "203.0.113.77";
        let secret_device = "123-45-6789";
        let bodies = [
            format!(r#"{{"ip": {secret_ip:?}, "device_id": {secret_device:?}}}"#),
            format!(
                r#"{{"user_id": "u", "app_version": "1", "device_type": "t", "ip": "{secret_ip}x", "device_id": "d"}}"#
            ),
            format!(r#"[{secret_ip:?}, {secret_device:?}]"#),
            format!(
                r#"{{"user_id": "u", "app_version": "{secret_device}", "device_type": "t", "ip": "1.1.1.1", "device_id": "d"}}"#
            ),
            format!(r#"{{"ip": {secret_ip:?} "#),
        ];
        for body in bodies {
            let message = LoginEvent::parse(&body).unwrap_err().to_string();
            assert!(
                !message.contains(secret_ip) && !message.contains(secret_device),
                "{message}"
            );
        }
    }
}
