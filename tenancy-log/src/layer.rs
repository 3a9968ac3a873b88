//! [`RedactingLayer`]: the ops stream's output layer, and the tenant sink's feeder.
//!
//! For each event it writes one line to its `MakeWriter`, stamped with the tenant of the
//! current [`TenantContext`] (or, where there is none, of the innermost span created in one)
//! and redacted by the [`Policy`]; when the event carried regulated content and a
//! [`TenantSink`] is configured, it formats the event a second time, whole, for that
//! tenant's sink. Span fields are formatted once, when the span is created or recorded,
//! and kept in the span's extensions in both forms.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tenancy_core::TenantContext;
use tracing::field::Visit;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::escape::{json_str, text_value};
use crate::policy::Policy;
use crate::regulated::{capture_pass, placeholder_pass, substitute_json};
use crate::sink::{TenantRecord, TenantSink};
use crate::time::push_rfc3339;
use crate::visit::{FieldClass, FieldWriter, Style};

/// The ops stream's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum Format {
    /// One JSON object per line:
    /// `{"timestamp":..,"level":..,"tenant":..,"correlation_id":..,"target":..,"fields":{..},"spans":[..]}`.
    #[default]
    Json,
    /// One readable line per event:
    /// `2025-03-01T12:00:00.000000Z  INFO tenant=acme correlation_id=.. span{k=v}: target: "message" k=v`.
    /// Every value that is not a plain token is quoted and escaped.
    Text,
}

/// Which events a tenant sink receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum SinkEvents {
    /// The events whose ops copy lost something: a field the policy redacted, or a
    /// [`Regulated`](crate::Regulated) value, in the event or in its tenant's spans.
    #[default]
    Redacted,
    /// Every event that has a tenant.
    All,
}

/// Hashes the address of a callsite's metadata: one multiplication.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8 | u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.0 = (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ClassCache = HashMap<usize, Arc<[FieldClass]>, BuildHasherDefault<AddressHasher>>;

static NEXT_LAYER_ID: AtomicU64 = AtomicU64::new(1);

/// A tracing-subscriber layer that writes the ops stream: every event stamped with its
/// tenant, regulated content redacted before any byte is written; and, with a
/// [`TenantSink`], the unredacted event to the sink of the tenant it belongs to.
///
/// ```
/// use tenancy_core::{Actor, TenantContext};
/// use tenancy_log::{Policy, RedactingLayer, Regulated};
/// use tracing_subscriber::prelude::*;
///
/// let policy = Policy::builder().regulated("capa.description").build()?;
/// let layer = RedactingLayer::builder().policy(policy).writer(std::io::stdout).build();
/// let subscriber = tracing_subscriber::registry().with(layer);
///
/// tracing::subscriber::with_default(subscriber, || {
///     let ctx = TenantContext::new("acme".parse()?, Actor::anonymous());
///     ctx.in_scope(|| {
///         let title = Regulated::new("Particles in vial batch 7");
///         tracing::info!(capa.id = 42, capa.description = "seen at inspection", "CAPA {title} opened");
///     });
///     Ok::<(), tenancy_core::Error>(())
/// })?;
/// // {"timestamp":"..","level":"INFO","tenant":"acme","correlation_id":"..","target":"..",
/// //  "fields":{"message":"CAPA [regulated] opened","capa.id":42,"capa.description":"[redacted]"}}
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What it stamps
///
/// The tenant is the one of [`TenantContext::current`] when the event is emitted; where no
/// context is in scope (a thread that entered a span but not the scope), the tenant of the
/// innermost enclosing span, which is the context that was current when that span (or its
/// nearest ancestor created in a scope) was created. Event and span fields named `tenant`,
/// `tenant_id` or `correlation_id` never change the stamp: they are written as
/// `claimed_tenant`, `claimed_tenant_id`, `claimed_correlation_id`. An event with no tenant
/// is stamped `"tenant":null` (`tenant=-`) and goes to no tenant sink.
///
/// # What other layers see
///
/// A layer cannot change what the layers beside it receive: a stock `fmt` or an
/// OpenTelemetry layer in the same subscriber gets every field's raw value, so a field the
/// policy redacts here is written whole by them. The protection that holds across every
/// layer is [`Regulated`](crate::Regulated): its value never reaches any `Visit` as text.
pub struct RedactingLayer<W = fn() -> io::Stdout> {
    writer: W,
    style: Style,
    policy: Policy,
    sink: Option<Arc<dyn TenantSink>>,
    sink_events: SinkEvents,
    id: u64,
    classes: RwLock<ClassCache>,
}

impl RedactingLayer {
    /// A layer writing JSON to standard output with the default (empty, deny-list) policy
    /// and no tenant sink, to be configured.
    pub fn builder() -> Builder<fn() -> io::Stdout> {
        Builder {
            writer: io::stdout,
            format: Format::Json,
            policy: Policy::default(),
            sink: None,
            sink_events: SinkEvents::Redacted,
        }
    }
}

impl<W> fmt::Debug for RedactingLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactingLayer")
            .field("style", &self.style)
            .field("policy", &self.policy)
            .field("tenant_sink", &self.sink.is_some())
            .field("sink_events", &self.sink_events)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedactingLayer`]; made by [`RedactingLayer::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<W> {
    writer: W,
    format: Format,
    policy: Policy,
    sink: Option<Arc<dyn TenantSink>>,
    sink_events: SinkEvents,
}

impl<W> fmt::Debug for Builder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("format", &self.format)
            .field("policy", &self.policy)
            .field("tenant_sink", &self.sink.is_some())
            .field("sink_events", &self.sink_events)
            .finish_non_exhaustive()
    }
}

impl<W> Builder<W> {
    /// Where the ops stream goes: any `MakeWriter` (standard output unless set).
    pub fn writer<W2>(self, writer: W2) -> Builder<W2>
    where
        W2: for<'a> MakeWriter<'a> + 'static,
    {
        Builder {
            writer,
            format: self.format,
            policy: self.policy,
            sink: self.sink,
            sink_events: self.sink_events,
        }
    }

    /// The ops stream's format ([`Format::Json`] unless set).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Writes JSON, one object per line.
    pub fn json(self) -> Self {
        self.format(Format::Json)
    }

    /// Writes readable text, one line per event.
    pub fn text(self) -> Self {
        self.format(Format::Text)
    }

    /// The classification policy (deny-list with no rules unless set: only
    /// [`Regulated`](crate::Regulated) values are redacted).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sends the unredacted copy of each regulated event to its tenant's sink.
    pub fn tenant_sink(mut self, sink: impl TenantSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Which events the tenant sink receives ([`SinkEvents::Redacted`] unless set).
    pub fn sink_events(mut self, events: SinkEvents) -> Self {
        self.sink_events = events;
        self
    }

    /// Builds the layer.
    pub fn build(self) -> RedactingLayer<W> {
        RedactingLayer {
            writer: self.writer,
            style: match self.format {
                Format::Json => Style::Json,
                Format::Text => Style::Text,
            },
            policy: self.policy,
            sink: self.sink,
            sink_events: self.sink_events,
            id: NEXT_LAYER_ID.fetch_add(1, Ordering::Relaxed),
            classes: RwLock::new(ClassCache::default()),
        }
    }
}

/// The tenant context a span was created in (or inherited from its parent). Shared by every
/// `RedactingLayer` of a subscriber.
struct SpanOwner(Option<TenantContext>);

/// Each `RedactingLayer`'s formatted fields of a span, by layer id.
#[derive(Default)]
struct SpanFieldsSet(Vec<(u64, SpanFields)>);

struct SpanFields {
    /// The ops form, in the layer's format.
    ops: String,
    /// The whole form, JSON, for the owner's sink; `None` without a sink, without an owner,
    /// or once a value was recorded into the span from another tenant's context.
    raw: Option<String>,
    /// Whether the ops form lost something.
    redacted: bool,
}

impl SpanFieldsSet {
    fn get(&self, layer: u64) -> Option<&SpanFields> {
        self.0
            .iter()
            .find(|(id, _)| *id == layer)
            .map(|(_, fields)| fields)
    }
}

thread_local! {
    static BUFFERS: std::cell::RefCell<(String, String)> =
        const { std::cell::RefCell::new((String::new(), String::new())) };
}

/// Runs `f` with this thread's line buffer and scratch buffer (fresh ones if they are in
/// use: an event emitted while formatting another).
fn with_buffers<R>(f: impl FnOnce(&mut String, &mut String) -> R) -> R {
    let mut f = Some(f);
    let reused = BUFFERS.try_with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        let (line, scratch) = &mut *guard;
        line.clear();
        let result = (f.take().expect("called once"))(line, scratch);
        if line.capacity() > 64 * 1024 {
            *line = String::new();
        }
        if scratch.capacity() > 64 * 1024 {
            *scratch = String::new();
        }
        Some(result)
    });
    match reused {
        Ok(Some(result)) => result,
        _ => (f.take().expect("not called yet"))(&mut String::new(), &mut String::new()),
    }
}

impl<W> RedactingLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn classes_for(&self, metadata: &'static Metadata<'static>) -> Arc<[FieldClass]> {
        let key = std::ptr::from_ref(metadata) as usize;
        if let Some(classes) = self
            .classes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return classes.clone();
        }
        let classes: Arc<[FieldClass]> = metadata
            .fields()
            .iter()
            .map(|field| FieldClass::new(&self.policy, field.name()))
            .collect();
        self.classes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, classes.clone());
        classes
    }

    /// Writes the line's opening: timestamp, level, tenant, correlation id (JSON: also the
    /// target).
    fn header(
        style: Style,
        out: &mut String,
        now: SystemTime,
        level: Level,
        tenant: Option<&TenantContext>,
        target: &str,
    ) {
        match style {
            Style::Json => {
                out.push_str("{\"timestamp\":\"");
                push_rfc3339(out, now);
                out.push_str("\",\"level\":\"");
                out.push_str(level.as_str());
                match tenant {
                    Some(ctx) => {
                        // Tenant and correlation ids are validated: nothing to escape.
                        out.push_str("\",\"tenant\":\"");
                        out.push_str(ctx.tenant().as_str());
                        out.push_str("\",\"correlation_id\":\"");
                        out.push_str(ctx.correlation_id().as_str());
                        out.push_str("\",\"target\":\"");
                    }
                    None => {
                        out.push_str("\",\"tenant\":null,\"correlation_id\":null,\"target\":\"")
                    }
                }
                json_str(out, target);
                out.push_str("\",\"fields\":{");
            }
            Style::Text => {
                push_rfc3339(out, now);
                out.push(' ');
                let level = level.as_str();
                for _ in level.len()..5 {
                    out.push(' ');
                }
                out.push_str(level);
                match tenant {
                    Some(ctx) => {
                        out.push_str(" tenant=");
                        out.push_str(ctx.tenant().as_str());
                        out.push_str(" correlation_id=");
                        out.push_str(ctx.correlation_id().as_str());
                    }
                    None => out.push_str(" tenant=- correlation_id=-"),
                }
            }
        }
    }

    /// The ops line of an event; returns whether the event's fields, or the fields of the
    /// spans of `tenant` around it, lost something to redaction.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private call site; a struct would only rename the arguments"
    )]
    fn ops_line<S>(
        &self,
        out: &mut String,
        scratch: &mut String,
        event: &Event<'_>,
        classes: &[FieldClass],
        now: SystemTime,
        tenant: Option<&TenantContext>,
        leaf: Option<&SpanRef<'_, S>>,
    ) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let metadata = event.metadata();
        Self::header(
            self.style,
            out,
            now,
            *metadata.level(),
            tenant,
            metadata.target(),
        );
        let mut spans_redacted = false;
        let event_redacted = match self.style {
            Style::Json => {
                let redacted = self.event_fields(out, scratch, event, classes, true);
                out.push('}');
                if let Some(leaf) = leaf {
                    out.push_str(",\"spans\":[");
                    let mut first = true;
                    for span in leaf.scope().from_root() {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        out.push_str("{\"name\":\"");
                        json_str(out, span.name());
                        out.push('"');
                        let extensions = span.extensions();
                        if let Some(fields) = extensions
                            .get::<SpanFieldsSet>()
                            .and_then(|set| set.get(self.id))
                        {
                            spans_redacted |= fields.redacted && same_owner(&extensions, tenant);
                            if !fields.ops.is_empty() {
                                out.push_str(",\"fields\":{");
                                out.push_str(&fields.ops);
                                out.push('}');
                            }
                        }
                        out.push('}');
                    }
                    out.push(']');
                }
                out.push('}');
                redacted
            }
            Style::Text => {
                if let Some(leaf) = leaf {
                    out.push(' ');
                    for span in leaf.scope().from_root() {
                        text_value(out, span.name());
                        let extensions = span.extensions();
                        if let Some(fields) = extensions
                            .get::<SpanFieldsSet>()
                            .and_then(|set| set.get(self.id))
                        {
                            spans_redacted |= fields.redacted && same_owner(&extensions, tenant);
                            if !fields.ops.is_empty() {
                                out.push('{');
                                out.push_str(&fields.ops);
                                out.push('}');
                            }
                        }
                        out.push(':');
                    }
                }
                out.push(' ');
                text_value(out, metadata.target());
                out.push(':');
                self.event_fields(out, scratch, event, classes, true)
            }
        };
        out.push('\n');
        event_redacted || spans_redacted
    }

    /// Writes the event's fields; returns whether the policy or a `Regulated` value
    /// redacted one.
    fn event_fields(
        &self,
        out: &mut String,
        scratch: &mut String,
        event: &Event<'_>,
        classes: &[FieldClass],
        redact: bool,
    ) -> bool {
        let style = if redact { self.style } else { Style::Json };
        let mut writer = FieldWriter {
            out,
            scratch,
            classes,
            redact,
            style,
            first: true,
            text_lead_space: true,
            redacted: false,
        };
        let ((), placeholders) = placeholder_pass(|| event.record(&mut writer));
        writer.redacted || placeholders
    }

    /// The tenant sink's record of an event: JSON, every field whole, the fields of the
    /// tenant's own spans whole and the others withheld.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private call site; a struct would only rename the arguments"
    )]
    fn sink_line<S>(
        out: &mut String,
        scratch: &mut String,
        event: &Event<'_>,
        classes: &[FieldClass],
        now: SystemTime,
        tenant: &TenantContext,
        leaf: Option<&SpanRef<'_, S>>,
        layer: u64,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let metadata = event.metadata();
        Self::header(
            Style::Json,
            out,
            now,
            *metadata.level(),
            Some(tenant),
            metadata.target(),
        );
        let from = out.len();
        let ((), values) = capture_pass(|| {
            let mut writer = FieldWriter {
                out: &mut *out,
                scratch: &mut *scratch,
                classes,
                redact: false,
                style: Style::Json,
                first: true,
                text_lead_space: false,
                redacted: false,
            };
            event.record(&mut writer);
        });
        substitute_json(out, from, &values);
        out.push('}');
        if let Some(leaf) = leaf {
            out.push_str(",\"spans\":[");
            let mut first = true;
            for span in leaf.scope().from_root() {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str("{\"name\":\"");
                json_str(out, span.name());
                out.push('"');
                let extensions = span.extensions();
                let raw = extensions
                    .get::<SpanFieldsSet>()
                    .and_then(|set| set.get(layer))
                    .and_then(|fields| fields.raw.as_deref())
                    .filter(|_| same_owner(&extensions, Some(tenant)));
                match raw {
                    Some("") => {}
                    Some(raw) => {
                        out.push_str(",\"fields\":{");
                        out.push_str(raw);
                        out.push('}');
                    }
                    None => out.push_str(",\"withheld\":true"),
                }
                out.push('}');
            }
            out.push(']');
        }
        out.push_str("}\n");
    }

    /// Tells the ops stream that a tenant sink refused a record, without its content.
    fn report_sink_failure(
        &self,
        metadata: &Metadata<'_>,
        tenant: &TenantContext,
        error: &io::Error,
    ) {
        with_buffers(|out, _| {
            Self::header(
                self.style,
                out,
                SystemTime::now(),
                Level::ERROR,
                Some(tenant),
                "tenancy_log",
            );
            let message = "the tenant sink refused a record: its unredacted copy is lost";
            let kind = format!("{:?}", error.kind());
            match self.style {
                Style::Json => {
                    out.push_str("\"message\":\"");
                    out.push_str(message);
                    out.push_str("\",\"error.kind\":\"");
                    json_str(out, &kind);
                    out.push_str("\",\"event.target\":\"");
                    json_str(out, metadata.target());
                    out.push_str("\"}}\n");
                }
                Style::Text => {
                    out.push_str(" tenancy_log: ");
                    text_value(out, message);
                    out.push_str(" error.kind=");
                    text_value(out, &kind);
                    out.push_str(" event.target=");
                    text_value(out, metadata.target());
                    out.push('\n');
                }
            }
            let _ = self.writer.make_writer().write_all(out.as_bytes());
        });
    }

    /// Formats a span's fields (at creation, or recorded later): the ops form, whether it
    /// lost something, and, when `raw_first` is given, the whole JSON form.
    fn span_fields(
        &self,
        metadata: &'static Metadata<'static>,
        record: impl Fn(&mut dyn Visit),
        ops_first: bool,
        raw_first: Option<bool>,
    ) -> (String, bool, Option<String>) {
        let classes = self.classes_for(metadata);
        let mut ops = String::new();
        let mut scratch = String::new();
        let (policy_redacted, placeholders) = placeholder_pass(|| {
            let mut writer = FieldWriter {
                out: &mut ops,
                scratch: &mut scratch,
                classes: &classes,
                redact: true,
                style: self.style,
                first: ops_first,
                text_lead_space: false,
                redacted: false,
            };
            record(&mut writer);
            writer.redacted
        });
        let raw = raw_first.map(|first| {
            let mut raw = String::new();
            let ((), values) = capture_pass(|| {
                let mut writer = FieldWriter {
                    out: &mut raw,
                    scratch: &mut scratch,
                    classes: &classes,
                    redact: false,
                    style: Style::Json,
                    first,
                    text_lead_space: false,
                    redacted: false,
                };
                record(&mut writer);
            });
            substitute_json(&mut raw, 0, &values);
            raw
        });
        (ops, policy_redacted || placeholders, raw)
    }
}

impl<S, W> Layer<S> for RedactingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Classify the callsite's fields once, before its first event.
        let _ = self.classes_for(metadata);
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let known = span
            .extensions()
            .get::<SpanOwner>()
            .map(|owner| owner.0.clone());
        let owner = known.unwrap_or_else(|| {
            TenantContext::current().ok().or_else(|| {
                span.parent()
                    .and_then(|parent| parent.extensions().get::<SpanOwner>()?.0.clone())
            })
        });
        let raw_first = (self.sink.is_some() && owner.is_some()).then_some(true);
        // Formatted with no lock held: a field's `Debug` may itself log.
        let (ops, redacted, raw) = self.span_fields(
            attrs.metadata(),
            |visit| attrs.record(visit),
            true,
            raw_first,
        );
        let fields = SpanFields { ops, raw, redacted };
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<SpanOwner>().is_none() {
            extensions.insert(SpanOwner(owner));
        }
        match extensions.get_mut::<SpanFieldsSet>() {
            Some(set) => {
                set.0.retain(|(layer, _)| *layer != self.id);
                set.0.push((self.id, fields));
            }
            None => extensions.insert(SpanFieldsSet(vec![(self.id, fields)])),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Values recorded from another tenant's context (or into a span that has no
        // tenant) never reach a sink whole: the span's whole form is dropped.
        let (ops_first, raw_first, same_tenant) = {
            let extensions = span.extensions();
            let owner = extensions
                .get::<SpanOwner>()
                .and_then(|owner| owner.0.as_ref());
            let same_tenant = match (owner, TenantContext::current().ok()) {
                (Some(owner), Some(current)) => owner.tenant() == current.tenant(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let fields = extensions
                .get::<SpanFieldsSet>()
                .and_then(|set| set.get(self.id));
            let ops_first = fields.is_none_or(|fields| fields.ops.is_empty());
            let raw_first = fields
                .and_then(|fields| fields.raw.as_ref())
                .filter(|_| same_tenant)
                .map(String::is_empty);
            (ops_first, raw_first, same_tenant)
        };
        let (ops, redacted, raw) = self.span_fields(
            span.metadata(),
            |visit| values.record(visit),
            ops_first,
            raw_first,
        );
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<SpanFieldsSet>().is_none() {
            extensions.insert(SpanFieldsSet::default());
        }
        let set = extensions
            .get_mut::<SpanFieldsSet>()
            .expect("inserted above");
        let index = match set.0.iter().position(|(layer, _)| *layer == self.id) {
            Some(index) => index,
            None => {
                let empty = SpanFields {
                    ops: String::new(),
                    raw: None,
                    redacted: false,
                };
                set.0.push((self.id, empty));
                set.0.len() - 1
            }
        };
        let fields = &mut set.0[index].1;
        fields.ops.push_str(&ops);
        fields.redacted |= redacted;
        match (same_tenant, fields.raw.as_mut(), raw) {
            (true, Some(whole), Some(added)) => whole.push_str(&added),
            _ => fields.raw = None,
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let classes = self.classes_for(metadata);
        let leaf = ctx.event_span(event);
        let tenant = TenantContext::current().ok().or_else(|| {
            leaf.as_ref()
                .and_then(|span| span.extensions().get::<SpanOwner>()?.0.clone())
        });
        let now = SystemTime::now();
        let redacted = with_buffers(|out, scratch| {
            let redacted = self.ops_line(
                out,
                scratch,
                event,
                &classes,
                now,
                tenant.as_ref(),
                leaf.as_ref(),
            );
            let _ = self
                .writer
                .make_writer_for(metadata)
                .write_all(out.as_bytes());
            redacted
        });
        let (Some(sink), Some(tenant)) = (&self.sink, &tenant) else {
            return;
        };
        if !redacted && self.sink_events == SinkEvents::Redacted {
            return;
        }
        let result = with_buffers(|out, scratch| {
            Self::sink_line(
                out,
                scratch,
                event,
                &classes,
                now,
                tenant,
                leaf.as_ref(),
                self.id,
            );
            sink.write(&TenantRecord {
                context: tenant,
                level: *metadata.level(),
                target: metadata.target(),
                line: out,
            })
        });
        if let Err(error) = result {
            self.report_sink_failure(metadata, tenant, &error);
        }
    }
}

/// Whether the span these extensions belong to was created in `tenant`'s context.
fn same_owner(
    extensions: &tracing_subscriber::registry::Extensions<'_>,
    tenant: Option<&TenantContext>,
) -> bool {
    match (
        extensions.get::<SpanOwner>().and_then(|o| o.0.as_ref()),
        tenant,
    ) {
        (Some(owner), Some(tenant)) => owner.tenant() == tenant.tenant(),
        _ => false,
    }
}
