//! Longest-prefix lookup in O(key length): a radix tree over the bytes of the prefixes.

/// Prefixes and their values; [`PrefixTrie::longest_match`] walks a key once, whatever the
/// number of prefixes.
///
/// A radix tree: each edge carries the bytes it consumes, no two edges of a node start with
/// the same byte, and an edge is split where two prefixes part. Matching bytes (not chars)
/// is what `str::starts_with` does, so a prefix may end inside a multi-byte char's encoding
/// only where a key does too.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie<T> {
    /// `nodes[0]` is the root: the empty prefix.
    nodes: Vec<Node<T>>,
}

#[derive(Debug, Clone)]
struct Node<T> {
    /// The value of the prefix that ends here.
    value: Option<T>,
    /// Sorted by their first byte, which no two share.
    edges: Vec<Edge>,
}

#[derive(Debug, Clone)]
struct Edge {
    /// Never empty.
    label: Box<[u8]>,
    to: usize,
}

impl<T> Default for PrefixTrie<T> {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![Node::empty()],
        }
    }
}

impl<T> Node<T> {
    fn empty() -> Self {
        Node {
            value: None,
            edges: Vec::new(),
        }
    }

    /// The edge whose label starts with `byte`, or where it would be inserted.
    fn edge(&self, byte: u8) -> Result<usize, usize> {
        self.edges.binary_search_by_key(&byte, |edge| edge.label[0])
    }
}

impl<T> PrefixTrie<T> {
    /// Adds `prefix` with `value`; returns the value it replaced, as `HashMap::insert` does.
    pub(crate) fn insert(&mut self, prefix: &str, value: T) -> Option<T> {
        let mut node = 0;
        let mut rest = prefix.as_bytes();
        while let Some(&first) = rest.first() {
            let at = match self.nodes[node].edge(first) {
                Ok(at) => at,
                Err(at) => {
                    let leaf = self.push(Node {
                        value: Some(value),
                        edges: Vec::new(),
                    });
                    let edge = Edge {
                        label: rest.into(),
                        to: leaf,
                    };
                    self.nodes[node].edges.insert(at, edge);
                    return None;
                }
            };
            let edge = &self.nodes[node].edges[at];
            let common = common_len(&edge.label, rest);
            if common < edge.label.len() {
                // `prefix` parts from this edge inside its label: split the edge there.
                let tail = Edge {
                    label: edge.label[common..].into(),
                    to: edge.to,
                };
                let middle = self.push(Node {
                    value: None,
                    edges: vec![tail],
                });
                let edge = &mut self.nodes[node].edges[at];
                edge.label = edge.label[..common].into();
                edge.to = middle;
            }
            node = self.nodes[node].edges[at].to;
            rest = &rest[common..];
        }
        self.nodes[node].value.replace(value)
    }

    /// The value of the longest prefix of `key`, in one walk along `key`'s bytes.
    pub(crate) fn longest_match(&self, key: &str) -> Option<&T> {
        let mut node = &self.nodes[0];
        let mut best = node.value.as_ref();
        let mut rest = key.as_bytes();
        while let Some(&first) = rest.first() {
            let Ok(at) = node.edge(first) else { break };
            let edge = &node.edges[at];
            let Some(after) = rest.strip_prefix(&*edge.label) else {
                break;
            };
            rest = after;
            node = &self.nodes[edge.to];
            best = node.value.as_ref().or(best);
        }
        best
    }

    /// Every prefix with its value, in byte order.
    pub(crate) fn entries(&self) -> Vec<(String, &T)> {
        let mut entries = Vec::new();
        let mut path = Vec::new();
        self.collect(0, &mut path, &mut entries);
        entries
    }

    fn collect<'a>(&'a self, node: usize, path: &mut Vec<u8>, into: &mut Vec<(String, &'a T)>) {
        let node = &self.nodes[node];
        if let Some(value) = &node.value {
            // A value ends a path only where a whole inserted `&str` ended: valid UTF-8.
            into.push((String::from_utf8_lossy(path).into_owned(), value));
        }
        for edge in &node.edges {
            path.extend_from_slice(&edge.label);
            self.collect(edge.to, path, into);
            path.truncate(path.len() - edge.label.len());
        }
    }

    fn push(&mut self, node: Node<T>) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// How many leading bytes `a` and `b` share.
fn common_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(prefixes: &[&str]) -> PrefixTrie<String> {
        let mut trie = PrefixTrie::default();
        for prefix in prefixes {
            assert_eq!(trie.insert(prefix, (*prefix).to_owned()), None, "{prefix}");
        }
        trie
    }

    /// What a line scan finds: the longest prefix `key` starts with.
    fn scanned<'a>(prefixes: &[&'a str], key: &str) -> Option<&'a str> {
        prefixes
            .iter()
            .filter(|p| key.starts_with(**p))
            .max_by_key(|p| p.len())
            .copied()
    }

    fn found<'a>(trie: &'a PrefixTrie<String>, key: &str) -> Option<&'a str> {
        trie.longest_match(key).map(String::as_str)
    }

    #[test]
    fn overlapping_prefixes_give_the_longest() {
        let trie = trie(&[
            "User",
            "UserUpdated.",
            "UserUpdated.user.profile.",
            "Order.",
        ]);
        assert_eq!(found(&trie, "UserUpdated.user"), Some("UserUpdated."));
        assert_eq!(
            found(&trie, "UserUpdated.user.profile.x"),
            Some("UserUpdated.user.profile.")
        );
        // Past `UserUpdated.` but off the longer prefix's path: the last match stands.
        assert_eq!(found(&trie, "UserUpdated.user.prof"), Some("UserUpdated."));
        assert_eq!(found(&trie, "UserDeleted.user"), Some("User"));
        assert_eq!(found(&trie, "Use"), None);
        assert_eq!(found(&trie, "Order."), Some("Order."));
        assert_eq!(found(&trie, "Payment.made"), None);
        assert_eq!(found(&trie, ""), None);
    }

    #[test]
    fn a_prefix_equal_to_the_key_matches() {
        let trie = trie(&["A.", "A.b"]);
        assert_eq!(found(&trie, "A.b"), Some("A.b"));
        assert_eq!(found(&trie, "A."), Some("A."));
        assert_eq!(found(&trie, "A"), None);
    }

    #[test]
    fn prefixes_inserted_in_any_order_split_edges_alike() {
        // The longer first: inserting the shorter splits its edge.
        let trie = trie(&["abcdef", "abc", "abx", "b"]);
        assert_eq!(found(&trie, "abcdefg"), Some("abcdef"));
        assert_eq!(found(&trie, "abcde"), Some("abc"));
        assert_eq!(found(&trie, "abxy"), Some("abx"));
        assert_eq!(found(&trie, "aby"), None);
        assert_eq!(found(&trie, "b"), Some("b"));
    }

    #[test]
    fn unicode_prefixes_match_by_bytes_as_starts_with_does() {
        // `é` and `è` share their first UTF-8 byte: the edge splits inside the char.
        let prefixes = ["café.", "cafè.", "日本.", "日本語.", "🦀"];
        let trie = trie(&prefixes);
        for key in [
            "café.latte",
            "cafè.noir",
            "日本.東京",
            "日本語.文",
            "日本",
            "🦀🦀",
            "caf",
        ] {
            assert_eq!(found(&trie, key), scanned(&prefixes, key), "{key}");
        }
        assert_eq!(found(&trie, "日本語.文"), Some("日本語."));
    }

    #[test]
    fn the_empty_prefix_matches_every_key() {
        let trie = trie(&["", "A."]);
        assert_eq!(found(&trie, "A.b"), Some("A."));
        assert_eq!(found(&trie, "B"), Some(""));
        assert_eq!(found(&trie, ""), Some(""));
    }

    #[test]
    fn inserting_a_prefix_again_replaces_its_value() {
        let mut trie = PrefixTrie::default();
        assert_eq!(trie.insert("A.", 1), None);
        assert_eq!(trie.insert("A.", 2), Some(1));
        assert_eq!(trie.longest_match("A.b"), Some(&2));
    }

    #[test]
    fn entries_list_every_prefix_in_byte_order() {
        let trie = trie(&["b", "abc", "", "ab", "日本"]);
        let entries: Vec<_> = trie.entries().into_iter().map(|(p, _)| p).collect();
        assert_eq!(entries, ["", "ab", "abc", "b", "日本"]);
    }

    #[test]
    fn a_thousand_prefixes_agree_with_a_line_scan() {
        let owned: Vec<String> = (0..1000)
            .map(|i| format!("Domain{}.{}", i % 97, "x".repeat(i % 5)))
            .collect();
        let mut prefixes: Vec<&str> = owned.iter().map(String::as_str).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let trie = trie(&prefixes);
        for i in 0..300 {
            let key = format!("Domain{}.{}", i % 113, "x".repeat(i % 7));
            assert_eq!(found(&trie, &key), scanned(&prefixes, &key), "{key}");
        }
    }
}
