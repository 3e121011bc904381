//! What one device may hand in: proxy events clipped to the sizes the store keeps, repeated
//! detections folded, and an event budget per device and minute. Proxy events become rows and
//! (detections) hash-chained audit entries, and any local user of a machine can hand events to
//! its daemon, so a device must not be able to flood the audit log or the event table.
//!
//! Events over a budget are dropped and counted with the batch's own `dropped` count (stored
//! as the endpoint's `events_dropped`), and logged at most once a minute per device.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_bom_protocol::ProxyEvent;

/// The window budgets are counted over.
const WINDOW: Duration = Duration::from_secs(60);
/// Identical detections of one device kept one by one per window; more are folded.
const KEEP_IDENTICAL: u32 = 10;
/// Distinct detections tracked per device and window for folding; beyond it a detection is
/// counted against the budget without being tracked (never unbounded memory).
const MAX_TRACKED_DETECTIONS: usize = 1_024;
/// Devices tracked at most before windows that ended are pruned.
const PRUNE_ABOVE: usize = 100_000;

/// Longest text kept of each field (the store clips to the same sizes).
const MAX_KIND: usize = 32;
const MAX_SERVER_ID: usize = 128;
const MAX_CLIENT: usize = 128;
const MAX_METHOD: usize = 128;
const MAX_TOOL: usize = 256;
const MAX_DECISION: usize = 16;
const MAX_ERA: usize = 16;
/// Reasons kept per event, and the length of each.
const MAX_REASONS: usize = 16;
const MAX_REASON: usize = 256;

/// The budgets of one device per minute.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Proxy events accepted per device and minute.
    pub events_per_minute: u32,
    /// Detections (events whose decision is not `forward`, each an audit entry) accepted per
    /// device and minute, after folding.
    pub detections_per_minute: u32,
}

/// Default of [`EventLimits::events_per_minute`]: a hundred tool calls a second, sustained.
pub const DEFAULT_EVENTS_PER_MINUTE: u32 = 6_000;
/// Default of [`EventLimits::detections_per_minute`].
pub const DEFAULT_DETECTIONS_PER_MINUTE: u32 = 600;

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            events_per_minute: DEFAULT_EVENTS_PER_MINUTE,
            detections_per_minute: DEFAULT_DETECTIONS_PER_MINUTE,
        }
    }
}

/// One device's counts in the current window.
#[derive(Debug)]
struct Window {
    start: Instant,
    events: u32,
    detections: u32,
    /// Identical detections seen, by what makes them identical.
    identical: HashMap<DetectionKey, u32>,
    warned: bool,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            events: 0,
            detections: 0,
            identical: HashMap::new(),
            warned: false,
        }
    }
}

/// What makes two detections the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DetectionKey {
    server_id: String,
    tool: Option<String>,
    decision: String,
    reasons: Vec<String>,
}

impl DetectionKey {
    fn of(e: &ProxyEvent) -> Self {
        Self {
            server_id: e.server_id.clone(),
            tool: e.tool.clone(),
            decision: e.decision.clone(),
            reasons: e.reasons.clone(),
        }
    }
}

/// A batch as admitted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Admitted {
    /// The events to store, clipped; folded detections carry a `repeated N times` reason.
    pub(crate) events: Vec<ProxyEvent>,
    /// Events refused for the device's budgets.
    pub(crate) refused: u64,
    /// Detections folded into another event of the batch.
    pub(crate) folded: u64,
}

/// The per-device budgets of a collector.
#[derive(Debug)]
pub(crate) struct EventBudget {
    limits: EventLimits,
    devices: Mutex<HashMap<String, Window>>,
}

impl EventBudget {
    pub(crate) fn new(limits: EventLimits) -> Self {
        Self {
            limits,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// Admit a batch of `agent_id`'s events at `now`: clip each, fold detections that repeat
    /// beyond [`KEEP_IDENTICAL`] in the window into one per batch, and refuse what is over the
    /// device's budgets.
    pub(crate) fn admit(&self, agent_id: &str, batch: Vec<ProxyEvent>, now: Instant) -> Admitted {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if devices.len() > PRUNE_ABOVE {
            devices.retain(|_, w| now.saturating_duration_since(w.start) < WINDOW);
        }
        let window = devices
            .entry(agent_id.to_string())
            .or_insert_with(|| Window::new(now));
        if now.saturating_duration_since(window.start) >= WINDOW {
            *window = Window::new(now);
        }
        let mut out = Admitted::default();
        // Index in `out.events` of the event a folded detection was folded into, and how many.
        let mut folded_into: HashMap<DetectionKey, (usize, u64)> = HashMap::new();
        for mut event in batch {
            clip(&mut event);
            let detection = (event.decision != "forward").then(|| DetectionKey::of(&event));
            let mut seen = 0;
            if let Some(key) = &detection {
                let tracked = window.identical.len();
                seen = match window.identical.get_mut(key) {
                    Some(n) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        if tracked < MAX_TRACKED_DETECTIONS {
                            window.identical.insert(key.clone(), 1);
                        }
                        1
                    }
                };
                // Folded into an event of this batch: no row, no audit entry of its own.
                if seen > KEEP_IDENTICAL
                    && let Some((_, n)) = folded_into.get_mut(key)
                {
                    *n += 1;
                    out.folded += 1;
                    continue;
                }
            }
            if window.events >= self.limits.events_per_minute {
                out.refused += 1;
                continue;
            }
            if let Some(key) = detection {
                if window.detections >= self.limits.detections_per_minute {
                    out.refused += 1;
                    continue;
                }
                window.detections += 1;
                if seen > KEEP_IDENTICAL {
                    folded_into.insert(key, (out.events.len(), 0));
                }
            }
            window.events += 1;
            out.events.push(event);
        }
        for (index, n) in folded_into.into_values() {
            if n > 0
                && let Some(event) = out.events.get_mut(index)
            {
                event.reasons.truncate(MAX_REASONS - 1);
                event
                    .reasons
                    .push(format!("repeated {} more times in this batch (folded)", n));
            }
        }
        if out.refused > 0 && !window.warned {
            window.warned = true;
            tracing::warn!(
                %agent_id,
                refused = out.refused,
                events_per_minute = self.limits.events_per_minute,
                detections_per_minute = self.limits.detections_per_minute,
                "device is over its proxy event budget; events dropped and counted until the minute ends"
            );
        }
        out
    }
}

/// Clip every text of `event` to what the store keeps.
fn clip(event: &mut ProxyEvent) {
    fn text(s: &mut String, max: usize) {
        if let Some((cut, _)) = s.char_indices().nth(max) {
            s.truncate(cut);
        }
    }
    text(&mut event.kind, MAX_KIND);
    text(&mut event.server_id, MAX_SERVER_ID);
    text(&mut event.era, MAX_ERA);
    text(&mut event.decision, MAX_DECISION);
    for (field, max) in [
        (&mut event.client, MAX_CLIENT),
        (&mut event.method, MAX_METHOD),
        (&mut event.tool, MAX_TOOL),
    ] {
        if let Some(s) = field {
            text(s, max);
        }
    }
    event.reasons.truncate(MAX_REASONS);
    for reason in &mut event.reasons {
        text(reason, MAX_REASON);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(tool: &str) -> ProxyEvent {
        ProxyEvent {
            ts_ms: 1,
            kind: "call".into(),
            server_id: "srv".into(),
            tool: Some(tool.into()),
            decision: "block".into(),
            reasons: vec!["secret in arguments".into()],
            ..Default::default()
        }
    }

    fn call() -> ProxyEvent {
        ProxyEvent {
            decision: "forward".into(),
            ..detection("t")
        }
    }

    #[test]
    fn every_text_is_clipped_and_reasons_are_bounded() {
        let budget = EventBudget::new(EventLimits::default());
        let mut e = detection(&"t".repeat(10_000));
        e.reasons = vec!["r".repeat(10_000); 1_000];
        e.client = Some("ü".repeat(1_000));
        let admitted = budget.admit("a", vec![e], Instant::now());
        let e = &admitted.events[0];
        assert_eq!(e.tool.as_ref().unwrap().len(), MAX_TOOL);
        assert_eq!(e.client.as_ref().unwrap().chars().count(), MAX_CLIENT);
        assert_eq!(e.reasons.len(), MAX_REASONS);
        assert!(e.reasons.iter().all(|r| r.len() == MAX_REASON));
    }

    #[test]
    fn repeated_detections_are_folded_into_one_per_batch() {
        let budget = EventBudget::new(EventLimits::default());
        let now = Instant::now();
        let admitted = budget.admit("a", vec![detection("t"); 20_000], now);
        assert_eq!(admitted.events.len(), KEEP_IDENTICAL as usize + 1);
        assert_eq!(admitted.folded, 20_000 - KEEP_IDENTICAL as u64 - 1);
        let last = admitted.events.last().unwrap();
        assert!(
            last.reasons.last().unwrap().contains("folded"),
            "{:?}",
            last.reasons
        );
        // The next batch of the same minute folds into one event again.
        let again = budget.admit("a", vec![detection("t"); 100], now);
        assert_eq!(again.events.len(), 1);
        assert_eq!(again.folded, 99);
    }

    #[test]
    fn a_device_over_its_budgets_has_the_excess_refused_until_the_minute_ends() {
        let budget = EventBudget::new(EventLimits {
            events_per_minute: 100,
            detections_per_minute: 5,
        });
        let now = Instant::now();
        let distinct: Vec<_> = (0..20).map(|i| detection(&format!("tool-{i}"))).collect();
        let admitted = budget.admit("a", distinct, now);
        assert_eq!(admitted.events.len(), 5);
        assert_eq!(admitted.refused, 15);
        let calls = budget.admit("a", vec![call(); 200], now);
        assert_eq!(calls.events.len(), 95);
        assert_eq!(calls.refused, 105);
        // Another device has its own budget; the next minute starts afresh.
        assert_eq!(budget.admit("b", vec![call(); 10], now).events.len(), 10);
        let later = budget.admit("a", vec![call(); 10], now + WINDOW);
        assert_eq!(later.events.len(), 10);
    }
}
