//! [`FilterPolicy`]: the SNS subscription filter policy derived from the handlers' keys.

use std::collections::BTreeSet;

use crate::router::Key;

/// An SNS subscription filter policy on the event-key attribute: exact keys as strings,
/// prefix patterns (`Order.*`) as `{"prefix": "Order."}`, so the queue gets exactly the events
/// its handlers route. A consumer with a fallback handler wants every event and needs no
/// policy ([`AppBuilder::filter_policy`](crate::AppBuilder::filter_policy) says `None`).
///
/// # Examples
///
/// ```
/// use iniesta::subscription::FilterPolicy;
///
/// let policy = FilterPolicy::from_keys("iniesta_pass", ["UserUpdated.user", "Order.*"]).unwrap();
/// assert_eq!(
///     policy.to_json(),
///     serde_json::json!({"iniesta_pass": ["UserUpdated.user", {"prefix": "Order."}]})
/// );
/// assert!(policy.matches("Order.created"));
/// assert!(!policy.matches("Payment.made"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    attribute: String,
    exact: BTreeSet<String>,
    prefixes: BTreeSet<String>,
}

/// Most values SNS takes in one filter policy.
pub const MAX_FILTER_VALUES: usize = 150;

/// A key that cannot go into a filter policy, or too many of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterPolicyError {
    /// A key or pattern routing would refuse too.
    #[error("`{key}` is not an event key or pattern: {reason}")]
    Key {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// More values than SNS takes.
    #[error(
        "{count} values, over SNS's {MAX_FILTER_VALUES}: group keys under patterns such as `Order.*`"
    )]
    TooManyValues {
        /// Values the policy would have.
        count: usize,
    },
}

impl FilterPolicy {
    /// The policy for `keys` (exact keys and `Prefix*` patterns, as routing takes them) on
    /// the attribute `attribute`. Exact keys a pattern covers are left out.
    ///
    /// # Errors
    ///
    /// A key routing would refuse (empty, a `*` not at the end, a lone `*`), or more than
    /// [`MAX_FILTER_VALUES`] values.
    pub fn from_keys<K: AsRef<str>>(
        attribute: impl Into<String>,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self, FilterPolicyError> {
        let mut policy = FilterPolicy {
            attribute: attribute.into(),
            exact: BTreeSet::new(),
            prefixes: BTreeSet::new(),
        };
        for key in keys {
            let key = key.as_ref();
            match crate::router::parse_key(key) {
                Ok(Key::Exact(exact)) => {
                    policy.exact.insert(exact.to_owned());
                }
                Ok(Key::Prefix(prefix)) => {
                    policy.prefixes.insert(prefix.to_owned());
                }
                Err(reason) => {
                    return Err(FilterPolicyError::Key {
                        key: key.to_owned(),
                        reason,
                    });
                }
            }
        }
        let prefixes = policy.prefixes.clone();
        policy
            .exact
            .retain(|key| !prefixes.iter().any(|p| key.starts_with(p.as_str())));
        let count = policy.exact.len() + policy.prefixes.len();
        if count > MAX_FILTER_VALUES {
            return Err(FilterPolicyError::TooManyValues { count });
        }
        Ok(policy)
    }

    /// Whether the policy names no key (SNS refuses an empty list: there is nothing to
    /// subscribe to).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The attribute it filters on.
    pub fn attribute(&self) -> &str {
        &self.attribute
    }

    /// Whether a message with the event key `event` passes.
    pub fn matches(&self, event: &str) -> bool {
        self.exact.contains(event) || self.prefixes.iter().any(|p| event.starts_with(p.as_str()))
    }

    /// The policy as SNS takes it (`FilterPolicy` subscription attribute), keys sorted.
    pub fn to_json(&self) -> serde_json::Value {
        let values: Vec<serde_json::Value> = self
            .exact
            .iter()
            .map(|key| serde_json::Value::from(key.as_str()))
            .chain(
                self.prefixes
                    .iter()
                    .map(|prefix| serde_json::json!({ "prefix": prefix })),
            )
            .collect();
        serde_json::json!({ self.attribute.as_str(): values })
    }

    /// Whether `json` (a subscription's `FilterPolicy`) asks for the same events: the same
    /// attribute and the same values in any order.
    pub fn same_as(&self, json: &serde_json::Value) -> bool {
        let Some(values) = json
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get(&self.attribute))
            .and_then(serde_json::Value::as_array)
        else {
            return false;
        };
        let mut theirs: Vec<String> = values.iter().map(ToString::to_string).collect();
        let mut ours: Vec<String> = match self.to_json().get(&self.attribute) {
            Some(serde_json::Value::Array(values)) => {
                values.iter().map(ToString::to_string).collect()
            }
            _ => Vec::new(),
        };
        theirs.sort();
        ours.sort();
        theirs == ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keys_and_prefixes_sorted_deduplicated_and_covered_keys_dropped() {
        let policy = FilterPolicy::from_keys("k", ["b", "a", "P.*", "a", "P.x"]).unwrap();
        assert_eq!(
            policy.to_json(),
            serde_json::json!({"k": ["a", "b", {"prefix": "P."}]})
        );
        assert!(!policy.is_empty());
        assert!(
            FilterPolicy::from_keys("k", Vec::<String>::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn keys_routing_refuses_and_too_many_values_are_errors() {
        for bad in ["*", "a*b", ""] {
            assert!(
                matches!(
                    FilterPolicy::from_keys("k", [bad]),
                    Err(FilterPolicyError::Key { .. })
                ),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..151).map(|i| format!("E{i}.x")).collect();
        assert_eq!(
            FilterPolicy::from_keys("k", &many),
            Err(FilterPolicyError::TooManyValues { count: 151 })
        );
    }

    #[test]
    fn the_same_policy_in_another_order_is_the_same() {
        let policy = FilterPolicy::from_keys("k", ["a", "P.*"]).unwrap();
        assert!(policy.same_as(&serde_json::json!({"k": [{"prefix": "P."}, "a"]})));
        assert!(!policy.same_as(&serde_json::json!({"k": ["a"]})));
        assert!(!policy.same_as(&serde_json::json!({"other": ["a", {"prefix": "P."}]})));
        assert!(!policy.same_as(&serde_json::json!({"k": ["a", {"prefix": "P."}], "x": ["y"]})));
    }
}
