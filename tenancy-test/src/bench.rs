//! A side-by-side benchmark harness: every variant runs in the same process, interleaved
//! round by round, and the report gives each variant's median time as a ratio of the
//! baseline's.
//!
//! These machines are shared and noisy, so absolute times from different runs do not
//! compare; ratios measured in one run, with the variants taking turns, do. Each round
//! runs every variant for a fixed number of iterations (in a rotating order, so none is
//! always first after a pause). The report gives each variant's median over rounds, and
//! the *paired ratio*: the median, over rounds, of the variant's time divided by the
//! baseline's time in the same round. When the machine drifts between fast and slow
//! states, the paired ratio compares each variant with the baseline under the same
//! conditions; prefer it, with many short rounds, for noisy measurements.
//!
//! ```
//! use tenancy_test::bench::Comparison;
//!
//! let report = Comparison::new("sum")
//!     .rounds(5)
//!     .iterations(100)
//!     .baseline("plain", || { std::hint::black_box((0..10u32).sum::<u32>()); })
//!     .variant("again", || { std::hint::black_box((0..10u32).sum::<u32>()); })
//!     .run();
//! assert!(report.ratio("again").is_finite());
//! ```

use std::fmt::Write as _;
use std::time::Instant;

type Body<'a> = Box<dyn FnMut() + 'a>;

/// A benchmark of variants against a baseline. The first variant added is the baseline.
pub struct Comparison<'a> {
    title: String,
    rounds: usize,
    iterations: usize,
    variants: Vec<(String, Body<'a>)>,
}

impl std::fmt::Debug for Comparison<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comparison")
            .field("title", &self.title)
            .field("rounds", &self.rounds)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl<'a> Comparison<'a> {
    /// A comparison called `title`: 30 rounds of 1,000 iterations unless changed.
    pub fn new(title: &str) -> Self {
        Comparison {
            title: title.to_owned(),
            rounds: 30,
            iterations: 1_000,
            variants: Vec::new(),
        }
    }

    /// How many rounds to run (the median is taken over them).
    pub fn rounds(mut self, rounds: usize) -> Self {
        self.rounds = rounds.max(1);
        self
    }

    /// How many times each variant runs per round.
    pub fn iterations(mut self, iterations: usize) -> Self {
        self.iterations = iterations.max(1);
        self
    }

    /// The variant the others are compared with. Call it first.
    pub fn baseline(self, name: &str, body: impl FnMut() + 'a) -> Self {
        assert!(
            self.variants.is_empty(),
            "add the baseline before the other variants"
        );
        self.variant(name, body)
    }

    /// Another variant.
    pub fn variant(mut self, name: &str, body: impl FnMut() + 'a) -> Self {
        self.variants.push((name.to_owned(), Box::new(body)));
        self
    }

    /// Runs every variant once to warm up, then the rounds; prints and returns the report.
    pub fn run(mut self) -> Report {
        assert!(!self.variants.is_empty(), "a comparison needs a baseline");
        for (_, body) in &mut self.variants {
            for _ in 0..self.iterations.min(100) {
                body();
            }
        }
        let count = self.variants.len();
        let mut samples = vec![Vec::with_capacity(self.rounds); count];
        for round in 0..self.rounds {
            for turn in 0..count {
                let index = (round + turn) % count;
                let body = &mut self.variants[index].1;
                let start = Instant::now();
                for _ in 0..self.iterations {
                    body();
                }
                let per_iteration = start.elapsed().as_nanos() as f64 / self.iterations as f64;
                samples[index].push(per_iteration);
            }
        }
        let baseline = samples[0].clone();
        let rows: Vec<Row> = self
            .variants
            .iter()
            .zip(samples)
            .map(|((name, _), mut times)| {
                let mut ratios: Vec<f64> =
                    times.iter().zip(&baseline).map(|(t, b)| t / b).collect();
                Row {
                    name: name.clone(),
                    paired_ratio: median(&mut ratios),
                    median_ns: median(&mut times),
                    min_ns: times[0],
                }
            })
            .collect();
        let report = Report {
            title: self.title,
            rounds: self.rounds,
            iterations: self.iterations,
            rows,
        };
        println!("{report}");
        report
    }
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    median_ns: f64,
    min_ns: f64,
    paired_ratio: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The result of a [`Comparison`]: per variant, the median and fastest round, the median
/// as a ratio of the baseline's, and the paired ratio.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    rounds: usize,
    iterations: usize,
    rows: Vec<Row>,
}

impl Report {
    /// The median time per iteration of `name`, in nanoseconds.
    ///
    /// # Panics
    ///
    /// If there is no variant called `name`.
    pub fn median_ns(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no variant called {name:?}"))
            .median_ns
    }

    /// The median of `name` divided by the baseline's median.
    pub fn ratio(&self, name: &str) -> f64 {
        self.median_ns(name) / self.rows[0].median_ns
    }

    /// The median over rounds of `name`'s time divided by the baseline's time in the same
    /// round.
    ///
    /// # Panics
    ///
    /// If there is no variant called `name`.
    pub fn paired_ratio(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no variant called {name:?}"))
            .paired_ratio
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        writeln!(
            out,
            "{} ({} rounds x {} iterations; times per iteration)",
            self.title, self.rounds, self.iterations
        )?;
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let baseline = self.rows[0].median_ns;
        writeln!(
            out,
            "  {:<width$}  {:>10}  {:>10}  {:>8}  {:>8}",
            "", "median", "fastest", "ratio", "paired"
        )?;
        for row in &self.rows {
            writeln!(
                out,
                "  {:<width$}  {:>10}  {:>10}  {:>7.3}x  {:>7.3}x",
                row.name,
                human(row.median_ns),
                human(row.min_ns),
                row.median_ns / baseline,
                row.paired_ratio,
            )?;
        }
        f.write_str(out.trim_end())
    }
}

fn human(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Pins every thread of process `pid` to `cpu` (with `taskset`), so that a benchmark and
/// the server processes it talks to share one core.
///
/// On a small virtual machine a round trip to a process on an idle core costs a wake-up
/// of tens of microseconds, decided by where the scheduler happened to put each process:
/// two variants of one benchmark, each on its own connection, then differ by their
/// placement rather than their work. Pinning everything to one core removes that.
/// Returns whether `taskset` succeeded.
pub fn pin_to_cpu(pid: u32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
