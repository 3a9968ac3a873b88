//! The ops stream: with canaries planted in every kind of field (the message, event fields,
//! span fields, error source chains, panic payloads, `Debug` of structs), it carries none of
//! them, in JSON and in text; every line is stamped with the tenant of the context, which no
//! field can change; values cannot forge lines or fields; the stock `EnvFilter` filters it.

mod common;

use common::{
    MemorySink, eqms_policy, found, json_lines, log_every_kind, panic_with_canary, tenant,
    with_panic_hook,
};
use tenancy_core::TenantContext;
use tenancy_log::{Format, Mode, Policy, RedactingLayer, Regulated};
use tenancy_test::log::{LogCapture, canary};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry};

fn layer(
    format: Format,
    policy: Policy,
    ops: &LogCapture,
    sink: &MemorySink,
) -> RedactingLayer<LogCapture> {
    RedactingLayer::builder()
        .writer(ops.clone())
        .format(format)
        .policy(policy)
        .tenant_sink(sink.sink())
        .build()
}

/// Logs every kind of field and a panic in `ctx`'s scope; returns the canaries.
fn log_everything(ctx: &TenantContext) -> Vec<String> {
    ctx.in_scope(|| {
        let mut planted = log_every_kind("ops");
        planted.push(with_panic_hook(|| panic_with_canary("ops")));
        planted
    })
}

#[test]
fn json_ops_stream_has_no_canary_and_every_line_its_tenant() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let acme = tenant("acme");
    let subscriber = Registry::default().with(layer(Format::Json, eqms_policy(), &ops, &sink));
    let planted = tracing::subscriber::with_default(subscriber, || log_everything(&acme));

    let text = ops.text();
    assert_eq!(found(&text, &planted), Vec::<&str>::new(), "{text}");
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 9, "{text}");
    for line in &lines {
        assert_eq!(line["tenant"], acme.tenant().as_str(), "{line}");
        assert_eq!(
            line["correlation_id"],
            acme.correlation_id().as_str(),
            "{line}"
        );
    }

    // Redacted, not dropped: the placeholders are where the values were, and what is not
    // regulated is still there.
    let fields = |i: usize| &lines[i]["fields"];
    assert_eq!(fields(0)["message"], "CAPA [regulated] opened");
    assert_eq!(fields(0)["capa.id"], 1);
    assert_eq!(fields(1)["capa.title"], "[redacted]");
    assert_eq!(fields(2)["capa.description"], "[redacted]");
    assert_eq!(fields(3)["note"], "[regulated]");
    let span = &lines[4]["spans"][0];
    assert_eq!(span["name"], "capa");
    assert_eq!(span["fields"]["capa.title"], "[redacted]");
    assert_eq!(span["fields"]["owner"], "[regulated]");
    assert_eq!(span["fields"]["capa.description"], "[redacted]");
    assert_eq!(fields(4)["step"], "review");
    assert_eq!(fields(5)["error"], "saving the CAPA failed");
    assert_eq!(fields(5)["error.sources"], "[redacted]");
    assert_eq!(fields(6)["error"], "CAPA [regulated] is locked");
    assert_eq!(fields(7)["record"], "Capa { id: 3, title: [regulated] }");
    assert_eq!(lines[8]["target"], "panic");
    assert_eq!(fields(8)["panic.payload"], "[regulated]");
    assert!(
        fields(8)["panic.location"]
            .as_str()
            .unwrap()
            .contains("common/mod.rs")
    );

    // The sink got every canary, whole, and only for this tenant.
    let whole = sink.lines_of(acme.tenant()).concat();
    assert_eq!(found(&whole, &planted).len(), planted.len(), "{whole}");
    assert_eq!(sink.all().len(), sink.lines_of(acme.tenant()).len());
}

#[test]
fn text_ops_stream_has_no_canary_and_one_tenant_stamp_per_line() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let acme = tenant("acme");
    let subscriber = Registry::default().with(layer(Format::Text, eqms_policy(), &ops, &sink));
    let planted = tracing::subscriber::with_default(subscriber, || log_everything(&acme));

    let text = ops.text();
    assert_eq!(found(&text, &planted), Vec::<&str>::new(), "{text}");
    let lines = ops.lines();
    assert_eq!(lines.len(), 9, "{text}");
    let stamp = format!("tenant={}", acme.tenant());
    for line in &lines {
        assert_eq!(tenant_tokens(line), [stamp.as_str()], "{line}");
    }
    assert!(
        lines[4]
            .contains("capa{capa.title=[redacted] owner=[regulated] capa.description=[redacted]}:"),
        "{}",
        lines[4]
    );
    assert!(
        lines[0].ends_with("\"CAPA [regulated] opened\" capa.id=1"),
        "{}",
        lines[0]
    );
    let whole = sink.lines_of(acme.tenant()).concat();
    assert_eq!(found(&whole, &planted).len(), planted.len(), "{whole}");
}

/// The tokens of a text line that start `tenant=`, outside quotes.
fn tenant_tokens(line: &str) -> Vec<&str> {
    tokens(line)
        .into_iter()
        .filter(|t| t.starts_with("tenant="))
        .collect()
}

/// A text line split at spaces and braces outside quotes: what a logfmt reader sees as
/// separate keys and values.
fn tokens(line: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '{' | '}' if !quoted => {
                tokens.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    tokens.push(&line[start..]);
    tokens
}

#[test]
fn fields_cannot_change_the_stamped_tenant() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let acme = tenant("acme");
    let globex = tenant("globex");
    let subscriber = Registry::default().with(layer(Format::Json, Policy::default(), &ops, &sink));
    tracing::subscriber::with_default(subscriber, || {
        acme.in_scope(|| {
            let spoof = globex.tenant().as_str();
            tracing::info!(tenant = spoof, tenant_id = spoof, "spoofed fields");
            tracing::info!(correlation_id = "forged", "forged correlation");
            tracing::info_span!("request", tenant = spoof)
                .in_scope(|| tracing::info!(note = %Regulated::new("x"), "in a spoofing span"));
            tracing::info!("{{\"tenant\":\"{spoof}\"}} tenant={spoof}");
        });
        // No context: no tenant, whatever the fields say, and no sink.
        tracing::info!(tenant = acme.tenant().as_str(), secret = %Regulated::new("y"), "outside");
    });
    let lines = json_lines(&ops.text());
    assert_eq!(lines.len(), 5);
    for line in &lines[..4] {
        assert_eq!(line["tenant"], acme.tenant().as_str(), "{line}");
    }
    assert_eq!(
        lines[0]["fields"]["claimed_tenant"],
        globex.tenant().as_str()
    );
    assert_eq!(
        lines[0]["fields"]["claimed_tenant_id"],
        globex.tenant().as_str()
    );
    assert!(lines[0]["fields"].get("tenant").is_none());
    assert_eq!(lines[1]["correlation_id"], acme.correlation_id().as_str());
    assert_eq!(lines[1]["fields"]["claimed_correlation_id"], "forged");
    assert_eq!(
        lines[2]["spans"][0]["fields"]["claimed_tenant"],
        globex.tenant().as_str()
    );
    assert!(lines[4]["tenant"].is_null());
    assert!(lines[4]["correlation_id"].is_null());
    // The regulated event of acme went to acme's sink, the one outside any context nowhere.
    let records = sink.all();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].0, acme.tenant());
    assert!(sink.lines_of(globex.tenant()).is_empty());
}

#[test]
fn values_cannot_forge_lines_fields_or_terminal_escapes() {
    let hostile = [
        "line one\nline two",
        "x\r\n{\"tenant\":\"evil\",\"level\":\"ERROR\"}",
        "\"}, \"tenant\": \"evil",
        "tenant=evil level=ERROR",
        "red \u{1b}[31mALERT\u{1b}[0m and clear \u{1b}[2J",
        "single-byte CSI \u{9b}31m",
        "reversed \u{202e}live=tnanet",
        "line\u{2028}separator",
        "nul \u{0} bell \u{7}",
        "back\\slash \\\" quote",
    ];
    for format in [Format::Json, Format::Text] {
        let (ops, sink) = (LogCapture::new(), MemorySink::default());
        let acme = tenant("acme");
        let subscriber = Registry::default().with(layer(format, Policy::default(), &ops, &sink));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", path = hostile[2]);
            acme.in_scope(|| {
                span.in_scope(|| {
                    for value in hostile {
                        tracing::info!(value, debug = ?value, "{value}");
                        tracing::info!(
                            error = &common::ChainError {
                                message: value.into(),
                                source: None
                            }
                                as &(dyn std::error::Error + 'static)
                        );
                    }
                })
            });
        });
        let text = ops.text();
        assert_eq!(
            text.lines().count(),
            2 * hostile.len(),
            "{format:?}: {text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}'),
            "{format:?}: {text}"
        );
        assert!(
            !text.contains('\u{202e}') && !text.contains('\u{2028}'),
            "{format:?}"
        );
        assert!(
            !text.contains('\r') && !text.contains('\u{0}'),
            "{format:?}"
        );
        match format {
            Format::Json => {
                let lines = json_lines(&text);
                for (i, value) in hostile.iter().enumerate() {
                    let line = &lines[2 * i];
                    assert_eq!(line["tenant"], acme.tenant().as_str());
                    assert_eq!(line["level"], "INFO");
                    // The value survives, exactly, inside its own field.
                    assert_eq!(line["fields"]["value"], *value);
                    assert_eq!(line["fields"]["message"], *value);
                    assert_eq!(line["fields"]["debug"], format!("{value:?}"));
                    assert_eq!(lines[2 * i + 1]["fields"]["error"], *value);
                    assert_eq!(line["spans"][0]["fields"]["path"], hostile[2]);
                }
            }
            _ => {
                let stamp = format!("tenant={}", acme.tenant());
                for line in text.lines() {
                    assert_eq!(tenant_tokens(line), [stamp.as_str()], "{line}");
                    assert!(
                        !tokens(line).iter().any(|t| t.starts_with("level=")),
                        "{line}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_stock_env_filter_filters_it_globally_and_per_layer() {
    let acme = tenant("acme");
    let global = (LogCapture::new(), MemorySink::default());
    let per_layer = (LogCapture::new(), MemorySink::default());
    let subscriber = Registry::default()
        .with(EnvFilter::new("info,noisy=warn"))
        .with(layer(Format::Json, eqms_policy(), &global.0, &global.1));
    let run = || {
        acme.in_scope(|| {
            tracing::debug!("debug: filtered out");
            tracing::info!(target: "noisy", "noisy info: filtered out");
            tracing::event!(target: "noisy", tracing::Level::WARN, capa.title = "t", "noisy warning");
            tracing::info!(capa.title = "t", "kept");
        })
    };
    tracing::subscriber::with_default(subscriber, run);
    let subscriber = Registry::default().with(
        layer(Format::Json, eqms_policy(), &per_layer.0, &per_layer.1)
            .with_filter(EnvFilter::new("info,noisy=warn")),
    );
    tracing::subscriber::with_default(subscriber, run);
    for (ops, sink) in [global, per_layer] {
        let lines = json_lines(&ops.text());
        let messages: Vec<_> = lines
            .iter()
            .map(|l| l["fields"]["message"].clone())
            .collect();
        assert_eq!(messages, ["noisy warning", "kept"]);
        assert!(lines.iter().all(|l| l["tenant"] == acme.tenant().as_str()));
        assert_eq!(sink.lines_of(acme.tenant()).len(), 2);
    }
}

#[test]
fn allow_list_mode_redacts_everything_not_public() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let acme = tenant("acme");
    let policy = Policy::builder()
        .mode(Mode::AllowList)
        .public("http.*")
        .internal("db.statement")
        .build()
        .unwrap();
    let c = [
        canary("allow-message"),
        canary("allow-field"),
        canary("allow-internal"),
    ];
    let subscriber = Registry::default().with(layer(Format::Json, policy, &ops, &sink));
    tracing::subscriber::with_default(subscriber, || {
        acme.in_scope(|| {
            tracing::info!(
                http.status = 201,
                new_field = c[1].as_str(),
                db.statement = c[2].as_str(),
                "created {}",
                c[0]
            )
        })
    });
    let text = ops.text();
    assert_eq!(found(&text, &c), Vec::<&str>::new(), "{text}");
    let line = &json_lines(&text)[0];
    assert_eq!(line["fields"]["http.status"], 201);
    assert_eq!(line["fields"]["message"], "[redacted]");
    assert_eq!(line["fields"]["new_field"], "[redacted]");
    assert_eq!(line["fields"]["db.statement"], "[redacted]");
    let whole = sink.lines_of(acme.tenant()).concat();
    assert_eq!(found(&whole, &c).len(), 3, "{whole}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tasks_of_two_tenants_are_each_stamped_with_their_own() {
    let (ops, sink) = (LogCapture::new(), MemorySink::default());
    let subscriber = Registry::default().with(layer(Format::Json, eqms_policy(), &ops, &sink));
    let _default = tracing::subscriber::set_default(subscriber);
    let tenants = [tenant("acme"), tenant("globex")];
    let mut tasks = Vec::new();
    for ctx in &tenants {
        for task in 0..4 {
            let label = ctx.tenant().to_string();
            // Each task hops threads at every await; its events must keep its tenant.
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let future = async move {
                for step in 0..50 {
                    tracing::info!(owner = %label, capa.title = %label, task, step, "step");
                    tokio::task::yield_now().await;
                }
            };
            tasks.push(
                ctx.spawn(tracing::instrument::WithSubscriber::with_subscriber(
                    future, dispatch,
                )),
            );
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let lines = json_lines(&ops.text());
    assert_eq!(lines.len(), 2 * 4 * 50);
    for line in &lines {
        assert_eq!(line["tenant"], line["fields"]["owner"], "{line}");
        assert_eq!(line["fields"]["capa.title"], "[redacted]");
    }
    for ctx in &tenants {
        let own = sink.lines_of(ctx.tenant());
        assert_eq!(own.len(), 4 * 50);
        let title = format!("\"capa.title\":\"{}\"", ctx.tenant());
        assert!(own.iter().all(|line| line.contains(&title)));
    }
}
