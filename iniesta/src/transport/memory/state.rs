//! The queue's bookkeeping, kept under one mutex: what is visible, in flight, delayed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use crate::message::{AttributeValue, RawMessage, Receipt};
use crate::transport::SystemAttributes;

/// One message as the queue stores it.
pub(super) struct Stored {
    pub(super) id: String,
    pub(super) body: Bytes,
    pub(super) attributes: HashMap<String, AttributeValue>,
    pub(super) group_id: Option<String>,
    pub(super) deduplication_id: Option<String>,
    pub(super) sent_at: SystemTime,
    pub(super) first_received_at: Option<SystemTime>,
    pub(super) receive_count: u32,
    /// Receipt handles that may delete this message. A receive replaces them all, except
    /// for injected duplicate deliveries, which add one.
    pub(super) receipts: Vec<Receipt>,
    /// Bumped whenever the visibility changes, so stale timer entries are ignored.
    pub(super) generation: u64,
    pub(super) in_flight: bool,
    pub(super) sequence: u64,
    /// Moved here by a redrive policy: not subject to deduplication again.
    pub(super) redriven: bool,
}

impl Stored {
    /// This delivery in the broker-neutral shape, and its SQS system attributes.
    fn delivery(&self, receipt: Receipt) -> (RawMessage, SystemAttributes) {
        let mut raw = RawMessage::new(self.id.clone(), receipt, self.body.clone());
        raw.headers = self.attributes.clone();
        raw.delivery_count = self.receive_count;
        raw.group_id = self.group_id.clone();
        raw.sent_at = Some(self.sent_at);
        let system = SystemAttributes {
            receive_count: self.receive_count,
            sent_timestamp: Some(self.sent_at),
            first_receive_timestamp: self.first_received_at,
            sender_id: None,
            message_group_id: self.group_id.clone(),
            deduplication_id: self.deduplication_id.clone(),
            sequence_number: self
                .group_id
                .as_ref()
                .map(|_| format!("{:020}", self.sequence)),
            aws_trace_header: None,
        };
        (raw, system)
    }
}

/// What a receive found: deliveries, and messages that exceeded `maxReceiveCount`.
#[derive(Default)]
pub(super) struct Received {
    pub(super) deliveries: Vec<(RawMessage, SystemAttributes)>,
    pub(super) dead_letters: Vec<Stored>,
}

#[derive(Default)]
pub(super) struct QueueState {
    next_sequence: u64,
    next_receipt: u64,
    /// Messages by sequence number: slot `i` holds sequence `base + i`. Sequences only grow,
    /// so lookups are O(1) without hashing (this is the simulator's hot path).
    slots: VecDeque<Option<Stored>>,
    base: u64,
    /// Visible messages, in send order (FIFO queues rely on the order).
    visible: BTreeSet<u64>,
    /// When delayed or in-flight messages become visible: (at, sequence, generation).
    timers: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    groups_in_flight: HashMap<String, usize>,
    deduplication: HashMap<String, Instant>,
    duplicates: Vec<u64>,
}

pub(super) const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(5 * 60);

impl QueueState {
    /// Stores a message; `false` when a FIFO deduplication id was seen in the last 5 minutes.
    pub(super) fn push(&mut self, mut stored: Stored, delay: Duration, now: Instant) -> bool {
        if let Some(dedup) = stored
            .deduplication_id
            .as_ref()
            .filter(|_| !stored.redriven)
        {
            self.deduplication
                .retain(|_, seen| now.duration_since(*seen) < DEDUPLICATION_WINDOW);
            if self.deduplication.contains_key(dedup) {
                return false;
            }
            self.deduplication.insert(dedup.clone(), now);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        stored.sequence = sequence;
        if delay.is_zero() {
            self.visible.insert(sequence);
        } else {
            self.timers.push(Reverse((now + delay, sequence, 0)));
        }
        self.slots.push_back(Some(stored));
        true
    }

    /// Makes visible what is due: delayed messages and expired visibility timeouts.
    pub(super) fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((at, sequence, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(stored) = slot_mut(&mut self.slots, self.base, sequence) else {
                continue;
            };
            if stored.generation != generation {
                continue;
            }
            if stored.in_flight {
                stored.in_flight = false;
                release_group(&mut self.groups_in_flight, stored.group_id.as_deref());
            }
            self.visible.insert(sequence);
        }
    }

    /// The next instant something becomes visible, if anything is waiting.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    pub(super) fn receive(
        &mut self,
        max: usize,
        visibility: Duration,
        max_receive_count: Option<u32>,
        now: Instant,
    ) -> Received {
        let mut out = Received::default();
        // Injected duplicates: an in-flight message delivered again, its old receipt still valid.
        while out.deliveries.len() < max {
            let Some(sequence) = self.duplicates.pop() else {
                break;
            };
            let receipt = self.new_receipt(sequence);
            if let Some(stored) = self.get_mut(sequence) {
                stored.receipts.push(receipt.clone());
                out.deliveries.push(stored.delivery(receipt));
            }
        }
        // FIFO: a group with a message in flight is blocked for this whole receive.
        let blocked: HashSet<String> = self.groups_in_flight.keys().cloned().collect();
        let mut taken = Vec::with_capacity(max);
        for &sequence in &self.visible {
            if out.deliveries.len() + taken.len() >= max {
                break;
            }
            if !blocked.is_empty() {
                let group = self.get(sequence).and_then(|m| m.group_id.as_ref());
                if group.is_some_and(|group| blocked.contains(group)) {
                    continue;
                }
            }
            taken.push(sequence);
        }
        for sequence in taken {
            self.visible.remove(&sequence);
            let exhausted = max_receive_count
                .is_some_and(|max| self.get(sequence).is_some_and(|m| m.receive_count >= max));
            if exhausted {
                if let Some(stored) = self.remove(sequence) {
                    out.dead_letters.push(stored);
                }
                continue;
            }
            let receipt = self.new_receipt(sequence);
            let Some(stored) = self.get_mut(sequence) else {
                continue;
            };
            stored.receipts.clear();
            stored.receipts.push(receipt.clone());
            stored.receive_count += 1;
            stored.first_received_at.get_or_insert_with(SystemTime::now);
            stored.generation += 1;
            stored.in_flight = true;
            let generation = stored.generation;
            let group = stored.group_id.clone();
            out.deliveries.push(stored.delivery(receipt));
            if let Some(group) = group {
                *self.groups_in_flight.entry(group).or_default() += 1;
            }
            self.timers
                .push(Reverse((now + visibility, sequence, generation)));
        }
        out
    }

    /// Deletes the message a receipt belongs to; `false` for a stale or unknown receipt.
    pub(super) fn delete(&mut self, receipt: &Receipt) -> bool {
        match self.holder_of(receipt) {
            Some(sequence) => {
                self.remove(sequence);
                true
            }
            None => false,
        }
    }

    /// Changes the visibility of an in-flight message; `false` for a stale receipt or a message
    /// that is not in flight (SQS: `MessageNotInflight`).
    pub(super) fn set_visibility(
        &mut self,
        receipt: &Receipt,
        timeout: Duration,
        now: Instant,
    ) -> bool {
        let Some(sequence) = self.holder_of(receipt) else {
            return false;
        };
        let Some(stored) = slot_mut(&mut self.slots, self.base, sequence) else {
            return false;
        };
        if !stored.in_flight {
            return false;
        }
        stored.generation += 1;
        if timeout.is_zero() {
            stored.in_flight = false;
            release_group(&mut self.groups_in_flight, stored.group_id.as_deref());
            self.visible.insert(sequence);
        } else {
            self.timers
                .push(Reverse((now + timeout, sequence, stored.generation)));
        }
        true
    }

    /// Schedules one more delivery of an in-flight message, as SQS sometimes does.
    pub(super) fn inject_duplicate(&mut self, id: &str) -> bool {
        match self.find(id) {
            Some(stored) if stored.in_flight => {
                let sequence = stored.sequence;
                self.duplicates.push(sequence);
                true
            }
            _ => false,
        }
    }

    pub(super) fn counts(&self) -> (usize, usize, usize) {
        let stored = self.slots.iter().flatten();
        let (total, in_flight) =
            stored.fold((0, 0), |(t, f), m| (t + 1, f + usize::from(m.in_flight)));
        let visible = self.visible.len();
        (visible, in_flight, total - visible - in_flight)
    }

    pub(super) fn receive_count_of(&self, id: &str) -> Option<u32> {
        self.find(id).map(|m| m.receive_count)
    }

    fn remove(&mut self, sequence: u64) -> Option<Stored> {
        let index = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        let stored = self.slots.get_mut(index)?.take()?;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        self.visible.remove(&sequence);
        if stored.in_flight {
            release_group(&mut self.groups_in_flight, stored.group_id.as_deref());
        }
        Some(stored)
    }

    fn get(&self, sequence: u64) -> Option<&Stored> {
        let index = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        self.slots.get(index)?.as_ref()
    }

    fn get_mut(&mut self, sequence: u64) -> Option<&mut Stored> {
        slot_mut(&mut self.slots, self.base, sequence)
    }

    /// Test helpers look messages up by id; a scan keeps the hot path free of an id index.
    fn find(&self, id: &str) -> Option<&Stored> {
        self.slots.iter().flatten().find(|m| m.id == id)
    }

    /// Receipts name their message's sequence (`m<sequence>.<n>`), so no index is needed; a
    /// receipt is valid while the message still lists it.
    fn holder_of(&self, receipt: &Receipt) -> Option<u64> {
        let sequence = receipt
            .as_str()
            .strip_prefix('m')?
            .split_once('.')?
            .0
            .parse()
            .ok()?;
        self.get(sequence)?
            .receipts
            .contains(receipt)
            .then_some(sequence)
    }

    fn new_receipt(&mut self, sequence: u64) -> Receipt {
        self.next_receipt += 1;
        Receipt::new(format!("m{sequence}.{}", self.next_receipt))
    }
}

/// A field-level borrow, so callers can update other fields while holding the message.
fn slot_mut(slots: &mut VecDeque<Option<Stored>>, base: u64, sequence: u64) -> Option<&mut Stored> {
    let index = usize::try_from(sequence.checked_sub(base)?).ok()?;
    slots.get_mut(index)?.as_mut()
}

fn release_group(groups: &mut HashMap<String, usize>, group: Option<&str>) {
    let Some(group) = group else { return };
    if let Some(count) = groups.get_mut(group) {
        *count -= 1;
        if *count == 0 {
            groups.remove(group);
        }
    }
}
