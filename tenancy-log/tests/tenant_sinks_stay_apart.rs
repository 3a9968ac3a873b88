//! Per-tenant sinks: each tenant's sink receives its own events whole, and never another
//! tenant's event or the fields of another tenant's span, with many tenants logging at once
//! on threads and tasks; spans created for one tenant and entered for another, and values
//! recorded into a span from another tenant's context, are withheld; a failing sink loses
//! the record without leaking it.

mod common;

use std::io;
use std::sync::{Arc, Barrier};

use common::{
    MemorySink, eqms_policy, found, json_lines, log_every_kind, panic_with_canary, tenant,
    with_panic_hook,
};
use tenancy_log::{DirectorySink, RedactingLayer, Regulated, SinkEvents, TenantRecord};
use tenancy_test::log::{LogCapture, canary};
use tracing_subscriber::Registry;
use tracing_subscriber::prelude::*;

#[test]
fn concurrent_tenants_each_find_only_their_own_canaries_in_their_file() {
    let dir = std::env::temp_dir().join(format!("tenancy-log-apart-{}", std::process::id()));
    let sink = DirectorySink::new(&dir, tenancy_test::naming())
        .unwrap()
        // Fewer open files than tenants: files are closed and reopened under the load.
        .max_open_files(3);
    let paths: Vec<_> = (0..8)
        .map(|i| {
            let ctx = tenant(&format!("t{i}"));
            (ctx.clone(), sink.path(ctx.tenant()))
        })
        .collect();
    let ops = LogCapture::new();
    let layer = RedactingLayer::builder()
        .writer(ops.clone())
        .policy(eqms_policy())
        .tenant_sink(sink)
        .build();
    let dispatch = tracing::Dispatch::new(Registry::default().with(layer));

    // Two threads per tenant, all started together, each logging every kind of field 20
    // times over, and panicking once (a panic's backtrace is slow to capture).
    let barrier = Arc::new(Barrier::new(2 * paths.len()));
    let planted = with_panic_hook(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .iter()
                .flat_map(|(ctx, _)| [ctx.clone(), ctx.clone()])
                .map(|ctx| {
                    let (barrier, dispatch) = (barrier.clone(), dispatch.clone());
                    scope.spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            barrier.wait();
                            let mut planted = Vec::new();
                            for round in 0..20 {
                                ctx.in_scope(|| {
                                    planted.extend(log_every_kind(ctx.tenant().as_str()));
                                    if round == 10 {
                                        planted.push(panic_with_canary(ctx.tenant().as_str()));
                                    }
                                });
                            }
                            (ctx.tenant().clone(), planted)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    });

    let ops_text = ops.text();
    let every: Vec<String> = planted.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(found(&ops_text, &every), Vec::<&str>::new());
    let per_thread = 20 * 8 + 1;
    assert_eq!(json_lines(&ops_text).len(), 2 * paths.len() * per_thread);

    for (ctx, path) in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let lines = json_lines(&text);
        assert_eq!(lines.len(), 2 * per_thread, "{}", ctx.tenant());
        for line in &lines {
            assert_eq!(line["tenant"], ctx.tenant().as_str(), "{line}");
        }
        for (owner, canaries) in &planted {
            let seen = found(&text, canaries);
            if owner == ctx.tenant() {
                assert_eq!(seen.len(), canaries.len(), "{owner} lost records");
            } else {
                assert_eq!(
                    seen,
                    Vec::<&str>::new(),
                    "{owner}'s canaries in {}",
                    ctx.tenant()
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_tenants_span_is_withheld_from_the_sink() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let layer = RedactingLayer::builder()
        .writer(ops.clone())
        .policy(eqms_policy())
        .tenant_sink(sink.sink())
        .build();
    let [
        acme_span_value,
        platform_value,
        recorded_by_globex,
        globex_value,
    ] = ["acme-span", "platform", "globex-recorded", "globex-event"].map(canary);
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        // A span of acme, entered by code running for globex.
        let acme_span = acme.in_scope(|| {
            tracing::info_span!(
                "acme_job",
                capa.title = acme_span_value.as_str(),
                capa.description = tracing::field::Empty
            )
        });
        globex.in_scope(|| {
            acme_span.in_scope(|| {
                tracing::info!(
                    capa.title = globex_value.as_str(),
                    "globex inside acme's span"
                )
            });
            // globex records a value into acme's span.
            acme_span.record("capa.description", recorded_by_globex.as_str());
        });
        // Later, acme logs inside its own span: the value globex recorded stays out.
        acme.in_scope(|| acme_span.in_scope(|| tracing::info!(note = %Regulated::new(1), "acme")));
        // A span made outside any tenant (a platform job), with a tenant's event inside.
        let platform = tracing::info_span!("migrate_all", capa.title = platform_value.as_str());
        acme.in_scope(|| platform.in_scope(|| tracing::info!(note = %Regulated::new(2), "acme")));
    });

    let acme_lines = sink.lines_of(acme.tenant()).concat();
    let globex_lines = sink.lines_of(globex.tenant()).concat();
    let all = [
        &acme_span_value,
        &platform_value,
        &recorded_by_globex,
        &globex_value,
    ]
    .map(|c| c.clone());

    // globex's sink has its own event, and none of acme's span.
    assert_eq!(found(&globex_lines, &all), [globex_value.as_str()]);
    assert!(
        globex_lines.contains("{\"name\":\"acme_job\",\"withheld\":true}"),
        "{globex_lines}"
    );
    // acme's sink has its span's own value, not globex's recorded one nor the platform's.
    assert_eq!(found(&acme_lines, &all), Vec::<&str>::new(), "{acme_lines}");
    let acme_records = json_lines(&acme_lines);
    assert_eq!(acme_records.len(), 2);
    assert_eq!(
        acme_records[0]["spans"][0]["withheld"], true,
        "recorded into by globex"
    );
    assert_eq!(
        acme_records[1]["spans"][0]["withheld"], true,
        "made outside any tenant"
    );

    // The ops stream: stamped by context, nothing regulated.
    let lines = json_lines(&ops.text());
    assert_eq!(lines[0]["tenant"], globex.tenant().as_str());
    assert_eq!(lines[1]["tenant"], acme.tenant().as_str());
    assert_eq!(found(&ops.text(), &all), Vec::<&str>::new());
}

#[test]
fn an_owned_span_gives_its_tenant_on_a_thread_without_context() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let acme = tenant("acme");
    let title = canary("span-thread");
    let layer = RedactingLayer::builder()
        .writer(ops.clone())
        .policy(eqms_policy())
        .tenant_sink(sink.sink())
        .build();
    let dispatch = tracing::Dispatch::new(Registry::default().with(layer));
    let span = tracing::dispatcher::with_default(&dispatch, || {
        let outer = tenancy_log::tenant_span(&acme);
        outer.in_scope(|| tracing::info_span!("inner", capa.title = title.as_str()))
    });
    std::thread::scope(|scope| {
        scope.spawn(|| {
            tracing::dispatcher::with_default(&dispatch, || {
                assert!(tenancy_core::TenantContext::current().is_err());
                span.in_scope(|| tracing::info!(note = %Regulated::new("n"), "on a bare thread"));
            })
        });
    });
    let line = &json_lines(&ops.text())[0];
    assert_eq!(line["tenant"], acme.tenant().as_str());
    assert_eq!(
        line["spans"][0]["fields"]["tenant.id"],
        acme.tenant().as_str()
    );
    let own = sink.lines_of(acme.tenant()).concat();
    assert!(own.contains(&title), "{own}");
}

#[test]
fn sink_events_chooses_regulated_or_all() {
    let acme = tenant("acme");
    for (events, expected) in [(SinkEvents::Redacted, 1), (SinkEvents::All, 2)] {
        let sink = MemorySink::default();
        let layer = RedactingLayer::builder()
            .writer(LogCapture::new())
            .policy(eqms_policy())
            .tenant_sink(sink.sink())
            .sink_events(events)
            .build();
        tracing::subscriber::with_default(Registry::default().with(layer), || {
            acme.in_scope(|| {
                tracing::info!(capa.id = 1, "nothing regulated");
                tracing::info!(capa.title = "t", "regulated");
            })
        });
        assert_eq!(sink.lines_of(acme.tenant()).len(), expected, "{events:?}");
    }
}

#[test]
fn a_failing_sink_loses_the_record_and_says_so_without_it() {
    let ops = LogCapture::new();
    let acme = tenant("acme");
    let title = canary("failing-sink");
    let layer = RedactingLayer::builder()
        .writer(ops.clone())
        .policy(eqms_policy())
        .tenant_sink(|_: &TenantRecord<'_>| Err(io::Error::from(io::ErrorKind::StorageFull)))
        .build();
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        acme.in_scope(|| tracing::info!(capa.title = title.as_str(), "regulated"))
    });
    let text = ops.text();
    assert!(!text.contains(&title), "{text}");
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["level"], "ERROR");
    assert_eq!(lines[1]["tenant"], acme.tenant().as_str());
    assert_eq!(lines[1]["fields"]["error.kind"], "StorageFull");
}
