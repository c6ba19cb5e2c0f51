//! The scheduler's queue: priority levels, a lane for delayed (timed-out) requests, deadlines,
//! and the batch-forming policy (maximum queue delay, preferred batch sizes). Pure logic under
//! the executor's lock; the workers call [`Queue::decide`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use kiln_core::HostTensor;

use crate::config::TimeoutAction;
use crate::request::Responder;
use crate::tensor::compatible;

/// An accepted request waiting in the queue.
pub(crate) struct Pending {
    pub seq: u64,
    pub inputs: Vec<HostTensor>,
    pub rows: usize,
    pub priority: usize,
    pub enqueued: Instant,
    pub timeout: Option<Duration>,
    pub action: TimeoutAction,
    pub delayed: bool,
    pub tx: Responder,
}

/// How batches are formed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    /// Rows one batch may hold (a single request larger than this still runs alone).
    pub cap: usize,
    pub delay: Duration,
    /// Ascending.
    pub preferred: Vec<usize>,
}

/// What a worker should do.
pub(crate) enum Decision {
    /// Run these requests as one batch.
    Dispatch(Vec<Pending>),
    /// Nothing to send yet: wait until then (or a new request).
    Wait(Instant),
    /// The queue is empty.
    Empty,
}

/// Accepted requests not yet running. Removal is lazy in the lanes and the deadline heap: an
/// id whose entry is gone (or moved to the delayed lane) is skipped.
pub(crate) struct Queue {
    entries: HashMap<u64, Pending>,
    levels: Vec<VecDeque<u64>>,
    delayed: VecDeque<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Queue {
    pub fn new(levels: usize) -> Queue {
        Queue {
            entries: HashMap::new(),
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            delayed: VecDeque::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, p: Pending) {
        if let Some(t) = p.timeout {
            self.deadlines.push(Reverse((p.enqueued + t, p.seq)));
        }
        self.levels[p.priority].push_back(p.seq);
        self.entries.insert(p.seq, p);
    }

    /// Takes a request out (cancellation); `None` when it is no longer queued.
    pub fn remove(&mut self, seq: u64) -> Option<Pending> {
        self.entries.remove(&seq)
    }

    /// Handles requests past their timeout at `now`: `Reject` ones are taken out and returned,
    /// `Delay` ones move behind everything else.
    pub fn expire(&mut self, now: Instant) -> Vec<Pending> {
        let mut rejected = Vec::new();
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(e) = self.entries.get_mut(&seq) else {
                continue;
            };
            match e.action {
                TimeoutAction::Reject => rejected.extend(self.entries.remove(&seq)),
                TimeoutAction::Delay => {
                    e.delayed = true;
                    self.delayed.push_back(seq);
                }
            }
        }
        rejected
    }

    /// The next timeout still to handle.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            if self.entries.get(&seq).is_some_and(|e| !e.delayed) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Forms the next batch under `policy`: requests in priority order (then the delayed
    /// lane), in arrival order within a level, as long as they fit `policy.cap` and share
    /// non-batch dims. Cancelled requests met on the way are removed and returned too.
    pub fn decide(
        &mut self,
        now: Instant,
        policy: &Policy,
        closing: bool,
    ) -> (Decision, Vec<Pending>) {
        let mut cancelled = Vec::new();
        let mut cand: Vec<u64> = Vec::new();
        let mut prefix: Vec<usize> = Vec::new();
        let mut sum = 0usize;
        let mut full = false;
        let mut oldest: Option<Instant> = None;
        let mut first: Option<u64> = None;
        let entries = &self.entries;
        let n_levels = self.levels.len();
        let lanes = self
            .levels
            .iter_mut()
            .chain(std::iter::once(&mut self.delayed));
        'walk: for (li, lane) in lanes.enumerate() {
            let delayed_lane = li == n_levels;
            let live = |s: &u64| entries.get(s).is_some_and(|e| delayed_lane || !e.delayed);
            while lane.front().is_some_and(|s| !live(s)) {
                lane.pop_front();
            }
            for s in lane.iter() {
                if !live(s) {
                    continue;
                }
                let e = &entries[s];
                if e.tx.is_closed() {
                    cancelled.push(*s);
                    continue;
                }
                if let Some(f) = first {
                    if sum + e.rows > policy.cap || !compatible(&entries[&f].inputs, &e.inputs) {
                        full = true;
                        break 'walk;
                    }
                } else {
                    first = Some(*s);
                }
                cand.push(*s);
                sum += e.rows;
                prefix.push(sum);
                oldest = Some(oldest.map_or(e.enqueued, |o| o.min(e.enqueued)));
                if sum >= policy.cap {
                    full = true;
                    break 'walk;
                }
            }
        }
        let cancelled: Vec<Pending> = cancelled
            .into_iter()
            .filter_map(|s| self.entries.remove(&s))
            .collect();
        let Some(oldest) = oldest else {
            return (Decision::Empty, cancelled);
        };
        let best_preferred = prefix
            .iter()
            .rposition(|p| policy.preferred.binary_search(p).is_ok());
        let take = if let Some(k) = best_preferred {
            k + 1
        } else if full || closing || now >= oldest + policy.delay {
            cand.len()
        } else {
            return (Decision::Wait(oldest + policy.delay), cancelled);
        };
        let batch = cand[..take]
            .iter()
            .map(|s| self.entries.remove(s).expect("candidate is queued"))
            .collect();
        (Decision::Dispatch(batch), cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn pending(
        seq: u64,
        rows: usize,
        priority: usize,
        at: Instant,
    ) -> (Pending, oneshot::Receiver<crate::request::Outcome>) {
        let (tx, rx) = oneshot::channel();
        let x = HostTensor::from_slice("x", &[rows, 1], &vec![1.0f32; rows]).unwrap();
        (
            Pending {
                seq,
                inputs: vec![x],
                rows,
                priority,
                enqueued: at,
                timeout: None,
                action: TimeoutAction::Reject,
                delayed: false,
                tx,
            },
            rx,
        )
    }

    fn seqs(d: Decision) -> Vec<u64> {
        match d {
            Decision::Dispatch(b) => b.iter().map(|p| p.seq).collect(),
            _ => panic!("expected a batch"),
        }
    }

    #[test]
    fn waits_for_the_delay_then_sends_what_is_there() {
        let t0 = Instant::now();
        let policy = Policy {
            cap: 8,
            delay: Duration::from_millis(5),
            preferred: vec![],
        };
        let mut q = Queue::new(1);
        let mut keep = Vec::new();
        for s in 0..3 {
            let (p, rx) = pending(s, 1, 0, t0);
            q.push(p);
            keep.push(rx);
        }
        assert!(
            matches!(q.decide(t0, &policy, false).0, Decision::Wait(t) if t == t0 + policy.delay)
        );
        assert_eq!(
            seqs(q.decide(t0 + policy.delay, &policy, false).0),
            vec![0, 1, 2]
        );
        assert!(matches!(q.decide(t0, &policy, false).0, Decision::Empty));
    }

    #[test]
    fn full_batches_and_preferred_sizes_go_at_once() {
        let t0 = Instant::now();
        let mut policy = Policy {
            cap: 4,
            delay: Duration::from_secs(10),
            preferred: vec![],
        };
        let mut q = Queue::new(1);
        let mut keep = Vec::new();
        for (s, rows) in [(0, 2), (1, 1), (2, 2), (3, 1)] {
            let (p, rx) = pending(s, rows, 0, t0);
            q.push(p);
            keep.push(rx);
        }
        // 2 + 1 fit, 2 more would not: the batch is full.
        assert_eq!(seqs(q.decide(t0, &policy, false).0), vec![0, 1]);
        policy.preferred = vec![2];
        // 2 + 1 = 3 rows queued: the prefix of 2 rows is a preferred size.
        assert_eq!(seqs(q.decide(t0, &policy, false).0), vec![2]);
        assert!(matches!(q.decide(t0, &policy, false).0, Decision::Wait(_)));
        assert_eq!(seqs(q.decide(t0, &policy, true).0), vec![3]);
    }

    #[test]
    fn priorities_timeouts_and_cancellation() {
        let t0 = Instant::now();
        let policy = Policy {
            cap: 1,
            delay: Duration::ZERO,
            preferred: vec![],
        };
        let mut q = Queue::new(2);
        let (mut a, ra) = pending(0, 1, 1, t0);
        a.timeout = Some(Duration::from_millis(1));
        a.action = TimeoutAction::Delay;
        let (mut b, _rb) = pending(1, 1, 1, t0);
        b.timeout = Some(Duration::from_millis(1));
        let (c, _rc) = pending(2, 1, 0, t0);
        let (d, rd) = pending(3, 1, 1, t0);
        let (e, _re) = pending(4, 1, 1, t0);
        for p in [a, b, c, d, e] {
            q.push(p);
        }
        drop(rd);
        let later = t0 + Duration::from_millis(2);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(1)));
        let rejected = q.expire(later);
        assert_eq!(rejected.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(q.next_deadline(), None);
        assert_eq!(seqs(q.decide(later, &policy, false).0), vec![2]);
        let (d, cancelled) = q.decide(later, &policy, false);
        assert_eq!(cancelled.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(seqs(d), vec![4]);
        assert_eq!(seqs(q.decide(later, &policy, false).0), vec![0]);
        assert!(q.is_empty());
        drop(ra);
    }
}
