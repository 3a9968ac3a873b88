//! What a stock tracing-subscriber `fmt` layer stacked beside ours prints: the placeholder
//! for a `Regulated` value, which holds across every layer, and the raw value of a field our
//! policy classifies regulated but nobody wrapped, which our layer cannot hide from another
//! (the documented limit). Also: `Regulated` values formatted while our sink's copy is
//! made (a `Display` cache) never hold the value afterwards, and `tenant_span` gives other
//! layers the tenant as a span field.

mod common;

use std::fmt;
use std::sync::OnceLock;

use common::{MemorySink, eqms_policy, found, json_lines, tenant};
use tenancy_log::{RedactingLayer, Regulated};
use tenancy_test::log::{LogCapture, canary};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Registry, fmt as stock};

#[test]
fn a_stock_fmt_layer_prints_the_placeholder_for_wrapped_values_and_the_raw_unwrapped_ones() {
    let (ours, sink) = (LogCapture::new(), MemorySink::default());
    let (stock_text, stock_json) = (LogCapture::new(), LogCapture::new());
    let acme = tenant("acme");
    let [wrapped, unwrapped, in_message, in_struct] =
        ["wrapped", "unwrapped", "message", "struct"].map(canary);
    let subscriber = Registry::default()
        .with(
            RedactingLayer::builder()
                .writer(ours.clone())
                .policy(eqms_policy())
                .tenant_sink(sink.sink())
                .build(),
        )
        .with(
            stock::layer()
                .with_writer(stock_text.clone())
                .with_ansi(false),
        )
        .with(stock::layer().json().with_writer(stock_json.clone()));
    tracing::subscriber::with_default(subscriber, || {
        acme.in_scope(|| {
            tracing::info!(
                capa.description = %Regulated::new(&wrapped),
                capa.title = unwrapped.as_str(),
                record = ?common::Capa { id: 1, title: Regulated::new(in_struct.clone()) },
                "CAPA {} opened",
                Regulated::new(&in_message)
            )
        })
    });

    // Ours: nothing regulated, wrapped or not.
    let all = [&wrapped, &unwrapped, &in_message, &in_struct].map(|c| c.clone());
    assert_eq!(found(&ours.text(), &all), Vec::<&str>::new());
    // Stock, text and JSON alike: the placeholder for every wrapped value...
    for stock in [&stock_text, &stock_json] {
        let text = stock.text();
        assert_eq!(found(&text, &all), [unwrapped.as_str()], "{text}");
        assert!(text.contains("[regulated]"), "{text}");
    }
    let stock_line = &json_lines(&stock_json.text())[0];
    assert_eq!(stock_line["fields"]["capa.description"], "[regulated]");
    assert_eq!(stock_line["fields"]["message"], "CAPA [regulated] opened");
    // ...and, for the field only our policy knows about, the raw value: a layer cannot
    // hide a value from the layers beside it.
    assert_eq!(stock_line["fields"]["capa.title"], unwrapped.as_str());
    // The tenant's sink has all four.
    let whole = sink.lines_of(acme.tenant()).concat();
    assert_eq!(found(&whole, &all).len(), 4, "{whole}");
}

/// A value that formats itself once and reuses the text: the kind of cache that would keep
/// a regulated value if one were ever formatted whole outside our own buffer.
struct CachedDisplay {
    inner: Regulated<String>,
    cache: OnceLock<String>,
}

impl fmt::Display for CachedDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cache.get_or_init(|| self.inner.to_string()))
    }
}

#[test]
fn a_value_cached_while_the_sink_copy_is_made_never_holds_the_regulated_text() {
    let (ours, sink, stock_out) = (LogCapture::new(), MemorySink::default(), LogCapture::new());
    let acme = tenant("acme");
    let secret = canary("cached");
    let cached = CachedDisplay {
        inner: Regulated::new(secret.clone()),
        cache: OnceLock::new(),
    };
    // Ours runs first; the policy redacts `capa.title` in the ops copy without formatting
    // it, so the first time the value is ever formatted is for the tenant sink.
    let subscriber = Registry::default()
        .with(
            RedactingLayer::builder()
                .writer(ours.clone())
                .policy(eqms_policy())
                .tenant_sink(sink.sink())
                .build(),
        )
        .with(stock::layer().json().with_writer(stock_out.clone()));
    tracing::subscriber::with_default(subscriber, || {
        acme.in_scope(|| tracing::info!(capa.title = %cached, "cached"))
    });
    assert!(sink.lines_of(acme.tenant()).concat().contains(&secret));
    let cache = cached.cache.get().expect("formatted for the sink");
    assert!(
        !cache.contains(&secret),
        "the cache kept the value: {cache:?}"
    );
    assert!(!stock_out.text().contains(&secret), "{}", stock_out.text());
    assert!(!ours.text().contains(&secret));
    assert!(!cached.to_string().contains(&secret));
}

#[test]
fn tenant_span_gives_other_layers_the_tenant_as_a_span_field() {
    let stock_json = LogCapture::new();
    let acme = tenant("acme");
    let subscriber =
        Registry::default().with(stock::layer().json().with_writer(stock_json.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tenancy_log::tenant_span(&acme).in_scope(|| tracing::info!("in the tenant's span"))
    });
    let line = &json_lines(&stock_json.text())[0];
    assert_eq!(line["span"]["name"], "tenant");
    assert_eq!(line["span"]["tenant.id"], acme.tenant().as_str());
}
