//! How a shard's rate follows Kinesis' answers, against a fake shard (a token bucket of what
//! other producers leave, and entries throttled at random) and a hand-driven clock: a cold
//! start at a shard others mostly use, throttling that does not depend on the rate, replicas
//! sharing a shard, and the rules of the windows.

use std::time::{Duration, Instant};

use super::{limits, record, two_shards};
use crate::pipeline::lanes::{CallFeedback, Lanes, ShardLimits};

/// Kinesis' side of a shard in the simulations: a bucket of `capacity` records/s holding one
/// second's worth (what other producers leave us), and a share `noise` of entries throttled at
/// random whatever the rate.
struct FakeShard {
    capacity: f64,
    tokens: f64,
    noise: f64,
    rng: u64,
}

impl FakeShard {
    fn new(capacity: f64, noise: f64) -> Self {
        Self {
            capacity,
            tokens: capacity,
            noise,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A call of `n` entries, `dt` after the previous call (of any replica): how many it
    /// throttles.
    fn call(&mut self, n: usize, dt: Duration) -> u32 {
        self.tokens = (self.tokens + self.capacity * dt.as_secs_f64()).min(self.capacity);
        let mut throttled = 0;
        for _ in 0..n {
            if self.noise > 0.0 && self.random() < self.noise {
                throttled += 1;
            } else if self.tokens >= 1.0 {
                self.tokens -= 1.0;
            } else {
                throttled += 1;
            }
        }
        throttled
    }
}

/// How often a simulated proxy sends a call (each answered one step later).
const STEP: Duration = Duration::from_millis(10);

/// Events a simulated proxy has outstanding for one shard: the cold-start scenario's 128
/// connections over 4 shards.
const OUTSTANDING: usize = 32;

/// One proxy's lane 0 with clients always waiting, sending a call every `STEP` to a fake
/// shard (shared with other replicas).
struct Replica {
    lanes: Lanes,
    next: usize,
    /// The call in flight: started at, entries sent.
    in_flight: Option<(Instant, usize, u32)>,
}

impl Replica {
    fn new(limit: f64, start: Instant) -> Self {
        let limits = ShardLimits {
            records_per_second: limit,
            bytes_per_second: 1e9,
            decrease_factor: 0.7,
            decrease_interval: Duration::from_millis(500),
            min_share: 0.05,
            increase_step: 0.05,
            increase_interval: Duration::from_millis(500),
            quiet_period: Duration::from_secs(2),
        };
        let mut lanes = Lanes::new(limits, Duration::ZERO, None);
        lanes.set_map(Some(two_shards("shard-upper")), start);
        Self {
            lanes,
            next: 0,
            in_flight: None,
        }
    }

    fn rate(&self) -> f64 {
        self.lanes.snapshot()[0].2.expect("a budget")
    }

    /// One step at `now`: the answer to the previous call comes back, then the next call
    /// takes what the budget allows. Returns (sent, throttled) of the answered call.
    fn step(&mut self, now: Instant, shard: &mut FakeShard, first: bool) -> (usize, u32) {
        let answered = self
            .in_flight
            .take()
            .map_or((0, 0), |(started_at, sent, throttled)| {
                let generation = self.lanes.generation();
                let call = CallFeedback {
                    started_at,
                    sent: sent as u32,
                    throttled,
                    accepted_bytes: 0,
                };
                self.lanes.feedback(generation, 0, call, now);
                (sent, throttled)
            });
        while self.lanes.lanes[0].queue.len() < 600 {
            self.lanes.push_back(record(self.next, false, now));
            self.next += 1;
        }
        self.lanes.eligible(now, 500);
        let sent = std::iter::from_fn(|| self.lanes.pop_eligible(false))
            .take(OUTSTANDING)
            .count();
        let throttled = shard.call(sent, if first { STEP } else { Duration::ZERO });
        self.in_flight = Some((now, sent, throttled));
        answered
    }
}

#[test]
fn a_cold_start_on_a_shard_others_mostly_use_settles_on_what_kinesis_accepts() {
    // 1,000 records/s configured, 250 left by the other producers: AIMD alone took four
    // 500 ms steps (x0.7) to get there, throttling ~13% of what it sent.
    let start = Instant::now();
    let mut shard = FakeShard::new(250.0, 0.0);
    let mut proxy = Replica::new(1_000.0, start);
    let (mut sent, mut throttled) = (0, 0);
    let mut rates_after_2s = Vec::new();
    for i in 1..=1_200u32 {
        let now = start + STEP * i;
        let (s, t) = proxy.step(now, &mut shard, true);
        sent += s;
        throttled += t;
        if now >= start + Duration::from_secs(2) {
            rates_after_2s.push(proxy.rate());
        }
    }
    let share = f64::from(throttled) / sent as f64;
    assert!(share <= 0.03, "{throttled} of {sent} throttled");
    let (low, high) = rates_after_2s
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), r| (l.min(*r), h.max(*r)));
    assert!(
        low >= 200.0 && high <= 310.0,
        "settled within 2 s near 250/s: {low:.0}..{high:.0}"
    );
}

#[test]
fn throttling_that_does_not_depend_on_the_rate_does_not_sink_it_to_the_floor() {
    // 20% of entries throttled at random, whatever the rate: cutting does not help, so the
    // cut is undone and the rate stays near the limit (AIMD alone sank it to min_share).
    let start = Instant::now();
    let mut shard = FakeShard::new(1e9, 0.2);
    let mut proxy = Replica::new(1_000.0, start);
    let mut lowest = f64::MAX;
    for i in 1..=1_200u32 {
        proxy.step(start + STEP * i, &mut shard, true);
        lowest = lowest.min(proxy.rate());
    }
    assert!(
        lowest >= 150.0,
        "the lowest rate was {lowest:.0} (floor 50)"
    );
    assert!(proxy.rate() >= 500.0, "{:.0} at the end", proxy.rate());
}

#[test]
fn random_throttling_on_top_of_a_full_shard_still_backs_off() {
    // Capacity 400 and 10% throttled at random: above the noise, throttling still cuts.
    let start = Instant::now();
    let mut shard = FakeShard::new(400.0, 0.1);
    let mut proxy = Replica::new(1_000.0, start);
    for i in 1..=1_000u32 {
        proxy.step(start + STEP * i, &mut shard, true);
    }
    assert!(
        (300.0..=650.0).contains(&proxy.rate()),
        "{:.0}",
        proxy.rate()
    );
}

#[test]
fn replicas_sharing_a_shard_converge_on_it_together() {
    let start = Instant::now();
    let mut shard = FakeShard::new(1_000.0, 0.0);
    let mut replicas: Vec<Replica> = (0..3).map(|_| Replica::new(1_000.0, start)).collect();
    let (mut sent, mut throttled) = (0, 0);
    let mut sums = Vec::new();
    for i in 1..=2_000u32 {
        let now = start + STEP * i;
        // Whose call reaches Kinesis first varies.
        let first = i as usize % replicas.len();
        for k in 0..replicas.len() {
            let replica = &mut replicas[(first + k) % 3];
            let (s, t) = replica.step(now, &mut shard, k == 0);
            if now >= start + Duration::from_secs(5) {
                sent += s;
                throttled += t;
            }
        }
        if now >= start + Duration::from_secs(5) {
            sums.push(replicas.iter().map(Replica::rate).sum::<f64>());
        }
    }
    let mean = sums.iter().sum::<f64>() / sums.len() as f64;
    assert!(
        (900.0..=1_200.0).contains(&mean),
        "together {mean:.0}/s on average"
    );
    assert!(
        f64::from(throttled) / sent as f64 <= 0.05,
        "{throttled} of {sent} throttled"
    );
}

#[test]
fn calls_sent_before_a_cut_do_not_cut_again_and_old_maps_are_ignored() {
    let start = Instant::now();
    let mut lanes = Lanes::new(limits(100.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), start);
    let generation = lanes.generation();
    let rate = |lanes: &Lanes| lanes.snapshot()[0].2.expect("limited");
    let call = |started_at, sent, throttled| CallFeedback {
        started_at,
        sent,
        throttled,
        accepted_bytes: 0,
    };
    // A wholly throttled window (not begun at a cut): by the factor (0.5) at most.
    lanes.feedback(generation, 0, call(start, 20, 20), start + STEP);
    assert_eq!(rate(&lanes), 50.0);
    // Calls that started before the cut were sent at the old rate: not counted.
    lanes.feedback(generation, 0, call(start, 20, 20), start + STEP * 2);
    assert_eq!(rate(&lanes), 50.0, "sent before the cut");
    lanes.feedback(
        generation + 1,
        0,
        call(start + STEP * 3, 20, 20),
        start + STEP * 4,
    );
    assert_eq!(rate(&lanes), 50.0, "feedback about an older map is ignored");
    // The other shard is untouched.
    assert_eq!(lanes.snapshot()[1].2, Some(100.0));
    // Quiet long enough (1 s here): +10% of the rate (of a quarter of the limit at least)
    // per 100 ms, up to the limit.
    let mut at = start + STEP + Duration::from_secs(1);
    lanes.eligible(at, 500);
    assert!((rate(&lanes) - 55.0).abs() < 1e-9, "{}", rate(&lanes));
    for _ in 0..20 {
        at += Duration::from_millis(100);
        lanes.eligible(at, 500);
    }
    assert_eq!(rate(&lanes), 100.0);
}

#[test]
fn a_few_throttled_entries_cut_the_rate_a_little_and_never_below_the_floor() {
    let start = Instant::now();
    let mut lanes = Lanes::new(limits(100.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), start);
    let rate = |lanes: &Lanes, lane: usize| lanes.snapshot()[lane].2.expect("a budget");
    let call = |started_at, sent, throttled| CallFeedback {
        started_at,
        sent,
        throttled,
        accepted_bytes: 0,
    };
    lanes.feedback(lanes.generation(), 0, call(start, 100, 4), start + STEP);
    assert!((rate(&lanes, 0) - 96.0).abs() < 1e-9, "{}", rate(&lanes, 0));
    // Wholly throttled over and over: down to min_share (0.1) and no further.
    for i in 0..50u32 {
        let at = start + STEP * (2 * i);
        lanes.feedback(lanes.generation(), 1, call(at, 20, 20), at + STEP);
    }
    assert_eq!(rate(&lanes, 1), 10.0);
}
