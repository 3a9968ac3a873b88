//! Run with: cargo bench -p tenancy-log --bench redacting_layer
//!
//! The cost per event of `RedactingLayer` (JSON, a policy that redacts `capa.title` and
//! `capa.description`, the tenant stamped from the context) next to tracing-subscriber's
//! stock JSON layer (`fmt::layer().json()`, its defaults) on the same events, both writing
//! to `std::io::sink()`, interleaved in one run. Each iteration emits a batch of 100 events
//! under the variant's subscriber, inside a tenant's scope for every variant, so entering
//! the subscriber is amortised and the times are those of 100 events.
//!
//! Three event shapes: fields and no span; an event inside two spans (the stock layer
//! re-reads its span fields as JSON for every event; this crate copies them); and a
//! `Regulated` value under a name the policy does not know, with a tenant sink as a third
//! variant (the event is formatted a second time, whole, for the sink, which writes to
//! `io::sink()` too). The line each layer writes is printed before each comparison.
//!
//! `TENANCY_BENCH_ROUNDS` (default 60) sets the rounds.

use std::hint::black_box;
use std::io;

use tenancy_core::{Actor, TenantContext};
use tenancy_log::{Policy, RedactingLayer, Regulated, TenantRecord};
use tenancy_test::bench::Comparison;
use tenancy_test::log::LogCapture;
use tracing::Dispatch;
use tracing_subscriber::Registry;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

const BATCH: usize = 100;

fn stock_json() -> Dispatch {
    stock_json_to(io::sink)
}

fn stock_json_to<W>(writer: W) -> Dispatch
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    Dispatch::new(
        Registry::default().with(tracing_subscriber::fmt::layer().json().with_writer(writer)),
    )
}

fn policy() -> Policy {
    Policy::builder()
        .regulated("capa.title")
        .regulated("capa.description")
        .regulated("*.sources")
        .build()
        .expect("a valid policy")
}

fn redacting(sink: bool) -> Dispatch {
    let builder = RedactingLayer::builder().policy(policy()).writer(io::sink);
    let layer = if sink {
        builder
            .tenant_sink(|record: &TenantRecord<'_>| {
                io::Write::write_all(&mut io::sink(), record.json_line().as_bytes())
            })
            .build()
    } else {
        builder.build()
    };
    Dispatch::new(Registry::default().with(layer))
}

/// Runs `events` BATCH times under `dispatch`, in `ctx`'s scope.
fn batch(dispatch: &Dispatch, ctx: &TenantContext, events: &dyn Fn()) {
    tracing::dispatcher::with_default(dispatch, || {
        ctx.in_scope(|| {
            for _ in 0..BATCH {
                events();
            }
        })
    });
}

/// Prints the line each layer writes for one run of `events`, so the reader sees what is
/// compared.
fn show(ctx: &TenantContext, events: &dyn Fn()) {
    let (stock, ours) = (LogCapture::new(), LogCapture::new());
    let layers = [
        stock_json_to(stock.clone()),
        Dispatch::new(
            Registry::default().with(
                RedactingLayer::builder()
                    .policy(policy())
                    .writer(ours.clone())
                    .build(),
            ),
        ),
    ];
    for dispatch in &layers {
        tracing::dispatcher::with_default(dispatch, || ctx.in_scope(events));
    }
    println!("  stock: {}", stock.text().trim_end());
    println!("  ours:  {}", ours.text().trim_end());
}

fn compare(title: &str, rounds: usize, ctx: &TenantContext, events: &dyn Fn(), with_sink: bool) {
    show(ctx, events);
    let (stock, ours, ours_sink) = (stock_json(), redacting(false), redacting(true));
    let mut comparison = Comparison::new(title)
        .rounds(rounds)
        .iterations(20)
        .baseline("stock fmt::layer().json()", || batch(&stock, ctx, events))
        .variant("RedactingLayer (JSON)", || batch(&ours, ctx, events));
    if with_sink {
        comparison = comparison.variant("RedactingLayer + tenant sink", || {
            batch(&ours_sink, ctx, events)
        });
    }
    let report = comparison.run();
    let paired = report.paired_ratio("RedactingLayer (JSON)");
    println!(
        "  paired ratio {paired:.3} (goal <= 1.25): {}\n",
        if paired <= 1.25 { "met" } else { "NOT MET" }
    );
}

fn main() {
    let rounds = std::env::var("TENANCY_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(60);
    let ctx = TenantContext::new(
        "acme-pharma".parse().expect("valid"),
        Actor::user("u-42", "Jane Doe").expect("valid"),
    );
    println!("times are per batch of {BATCH} events\n");

    compare(
        "an event with five fields, no span",
        rounds,
        &ctx,
        &|| {
            tracing::info!(
                capa.id = black_box(42u64),
                capa.title = black_box("Particles in vial batch 7"),
                user = "u-42",
                elapsed_ms = 12.5,
                "CAPA opened"
            )
        },
        false,
    );

    // Spans are made under each subscriber, once, and entered for every event.
    let stock = stock_json();
    let ours = redacting(false);
    let spans = |dispatch: &Dispatch| {
        tracing::dispatcher::with_default(dispatch, || {
            let request = tracing::info_span!("request", method = "GET", path = "/capa/42");
            let capa = request.in_scope(|| tracing::info_span!("capa", capa.id = 42u64));
            (request, capa)
        })
    };
    let (stock_spans, our_spans) = (spans(&stock), spans(&ours));
    {
        let (stock_out, ours_out) = (LogCapture::new(), LogCapture::new());
        let stock_shown = stock_json_to(stock_out.clone());
        let ours_shown = Dispatch::new(
            Registry::default().with(
                RedactingLayer::builder()
                    .policy(policy())
                    .writer(ours_out.clone())
                    .build(),
            ),
        );
        for (dispatch, out) in [(&stock_shown, &stock_out), (&ours_shown, &ours_out)] {
            let spans = spans(dispatch);
            tracing::dispatcher::with_default(dispatch, || {
                ctx.in_scope(|| spans.1.in_scope(|| tracing::info!(status = 200u64, "done")))
            });
            let name = if std::ptr::eq(out, &stock_out) {
                "stock:"
            } else {
                "ours: "
            };
            println!("  {name} {}", out.text().trim_end());
        }
    }
    let in_spans = |dispatch: &Dispatch, spans: &(tracing::Span, tracing::Span)| {
        tracing::dispatcher::with_default(dispatch, || {
            ctx.in_scope(|| {
                let _capa = spans.1.enter();
                for _ in 0..BATCH {
                    tracing::info!(status = black_box(200u64), "done");
                }
            })
        })
    };
    let report = Comparison::new("an event inside two spans")
        .rounds(rounds)
        .iterations(20)
        .baseline("stock fmt::layer().json()", || {
            in_spans(&stock, &stock_spans)
        })
        .variant("RedactingLayer (JSON)", || in_spans(&ours, &our_spans))
        .run();
    let paired = report.paired_ratio("RedactingLayer (JSON)");
    println!(
        "  paired ratio {paired:.3} (goal <= 1.25): {}\n",
        if paired <= 1.25 { "met" } else { "NOT MET" }
    );

    let description = Regulated::new("Deviation: temperature excursion in cold room 2");
    compare(
        "an event with a Regulated value",
        rounds,
        &ctx,
        &|| {
            tracing::info!(
                capa.id = black_box(42u64),
                deviation = %black_box(&description),
                "CAPA updated"
            )
        },
        true,
    );
}
