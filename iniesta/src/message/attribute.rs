//! Typed SQS message attributes, and how SQS and SNS carry them.

#[cfg(feature = "sqs")]
use std::collections::HashMap;

use bytes::Bytes;

/// The value of one message attribute, typed by its SQS `DataType`.
///
/// Custom type labels (`String.uuid`, `Number.int`) keep their base type. iniesta (the Python
/// library) sends lists as `String.Array` with a JSON array as the string value; those arrive as
/// [`AttributeValue::Array`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttributeValue {
    /// `String` (and `String.<label>`).
    String(String),
    /// `Number`, kept as the decimal text SQS carries so no precision is lost.
    Number(String),
    /// `Binary`.
    Binary(Bytes),
    /// `String.Array`: a JSON array, as iniesta publishes lists.
    Array(Vec<serde_json::Value>),
}

impl AttributeValue {
    /// Builds a value from an SQS `DataType` and its string value.
    ///
    /// A `String.Array` whose value is not a JSON array stays a plain string, so a malformed
    /// attribute never loses the message.
    pub fn from_data_type(data_type: &str, value: String) -> Self {
        if data_type == "String.Array" {
            if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&value) {
                return AttributeValue::Array(items);
            }
            return AttributeValue::String(value);
        }
        if data_type == "Number" || data_type.starts_with("Number.") {
            AttributeValue::Number(value)
        } else {
            AttributeValue::String(value)
        }
    }

    /// The SQS `DataType` this value is sent as.
    pub fn data_type(&self) -> &'static str {
        match self {
            AttributeValue::String(_) => "String",
            AttributeValue::Number(_) => "Number",
            AttributeValue::Binary(_) => "Binary",
            AttributeValue::Array(_) => "String.Array",
        }
    }

    /// The text of a `String` or `Number` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::String(s) | AttributeValue::Number(s) => Some(s),
            _ => None,
        }
    }

    /// The string SQS carries as `StringValue`, or `None` for binary values.
    pub fn to_string_value(&self) -> Option<String> {
        match self.wire_value() {
            WireValue::String(text) => Some(text),
            WireValue::Binary(_) => None,
        }
    }

    /// The value field SQS and SNS carry this value in, next to its
    /// [`data_type`](Self::data_type): the one rule every SDK conversion follows.
    pub(crate) fn wire_value(&self) -> WireValue<'_> {
        match self {
            AttributeValue::String(s) | AttributeValue::Number(s) => WireValue::String(s.clone()),
            AttributeValue::Array(items) => {
                WireValue::String(serde_json::Value::Array(items.clone()).to_string())
            }
            AttributeValue::Binary(bytes) => WireValue::Binary(bytes),
        }
    }

    /// The bytes of a `Binary` value.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            AttributeValue::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// A `Number` value parsed as `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttributeValue::Number(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A `Number` value parsed as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttributeValue::Number(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Which of a `MessageAttributeValue`'s two value fields an attribute fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    /// `StringValue`: strings, numbers, and `String.Array` as JSON.
    String(String),
    /// `BinaryValue`.
    Binary(&'a [u8]),
}

/// `attributes` in one SDK's attribute type, each built by `build` from its data type and
/// value; an attribute `build` refuses is left out (the checks before sending let none through).
#[cfg(feature = "sqs")]
pub(crate) fn attributes_to_sdk<V>(
    attributes: &HashMap<String, AttributeValue>,
    build: impl Fn(&'static str, WireValue<'_>) -> Option<V>,
) -> HashMap<String, V> {
    attributes
        .iter()
        .filter_map(|(name, value)| {
            Some((name.clone(), build(value.data_type(), value.wire_value())?))
        })
        .collect()
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_array_parses_json_lists_and_keeps_malformed_ones() {
        let list = AttributeValue::from_data_type("String.Array", r#"["a", 1]"#.into());
        assert_eq!(
            list,
            AttributeValue::Array(vec!["a".into(), serde_json::json!(1)])
        );
        let bad = AttributeValue::from_data_type("String.Array", "not json".into());
        assert_eq!(bad, AttributeValue::String("not json".into()));
    }

    #[test]
    fn binary_goes_in_the_binary_field_everything_else_as_text() {
        let cases = [
            (
                AttributeValue::String("a".into()),
                "String",
                WireValue::String("a".into()),
            ),
            (
                AttributeValue::Number("-1.5".into()),
                "Number",
                WireValue::String("-1.5".into()),
            ),
            (
                AttributeValue::Array(vec!["a".into(), serde_json::json!(2)]),
                "String.Array",
                WireValue::String(r#"["a",2]"#.into()),
            ),
            (
                AttributeValue::Binary(Bytes::from_static(&[0, 255])),
                "Binary",
                WireValue::Binary(&[0, 255]),
            ),
        ];
        for (value, data_type, wire) in &cases {
            assert_eq!(value.data_type(), *data_type);
            assert_eq!(&value.wire_value(), wire);
        }
    }

    #[test]
    fn custom_labels_keep_their_base_type() {
        let n = AttributeValue::from_data_type("Number.int", "42".into());
        assert_eq!(n.as_i64(), Some(42));
        let s = AttributeValue::from_data_type("String.uuid", "x".into());
        assert_eq!(s.as_str(), Some("x"));
    }
}
