//! Structured logs (tracing): JSON lines when stdout is not a terminal, readable text when it
//! is. Both formats redact the value of every field whose name marks a secret (docs/security.md#log-redaction), in
//! events and in spans, and every line inside a request carries its `request_id` (docs/security.md#request-ids).

use std::fmt;
use std::io::IsTerminal;

use mailroom_core::redact::{REDACTED, is_secret_name, scrub_credentials};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!("unknown log format `{other}` (auto, json, text)")),
        }
    }
}

/// Installs the process-wide subscriber writing to stdout.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let json = match format {
        LogFormat::Auto => !std::io::stdout().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let subscriber = subscriber(json, filter, std::io::stdout)?;
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}

/// A subscriber writing redacted JSON or text to `writer`.
pub fn subscriber<W>(
    json: bool,
    filter: &str,
    writer: W,
) -> anyhow::Result<Box<dyn Subscriber + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)?;
    let base = Registry::default().with(filter);
    Ok(if json {
        Box::new(
            base.with(SpanFieldsLayer).with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .fmt_fields(RedactedText)
                    .with_writer(writer),
            ),
        )
    } else {
        let ansi = std::io::stdout().is_terminal();
        Box::new(
            base.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(RedactedText)
                    .with_ansi(ansi)
                    .with_writer(writer),
            ),
        )
    })
}

fn redacted(field: &Field) -> bool {
    is_secret_name(field.name())
}

/// `name=value` pairs, secrets replaced: the text format's fields, of events and spans.
struct RedactedText;

impl<'w> FormatFields<'w> for RedactedText {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl Visit for TextVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if redacted(field) {
            write!(self.writer, "{separator}{}={REDACTED}", field.name())
        } else {
            let shown = format!("{value:?}");
            let shown = scrub_credentials(&shown);
            if field.name() == "message" {
                write!(self.writer, "{separator}{shown}")
            } else {
                write!(self.writer, "{separator}{}={shown}", field.name())
            }
        };
    }
}

/// Collects fields into a JSON object, secrets replaced.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let value = match value {
            _ if redacted(field) => Value::String(REDACTED.to_owned()),
            Value::String(text) => Value::String(scrub_credentials(&text).into_owned()),
            other => other,
        };
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// A span's fields as JSON, kept in the span's extensions for [`JsonLines`].
struct SpanFields(Map<String, Value>);

/// Records span fields (redacted) as they are set, so each event can carry its spans' fields.
struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
        }
    }
}

/// One JSON object per line: time, level, target, the fields of every enclosing span
/// (outermost first), then the event's own fields and message.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        let timestamp = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.clone());
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Runs `emit` under a subscriber of the given format and returns what it logged.
#[cfg(test)]
pub(crate) fn capture(json: bool, emit: impl FnOnce()) -> String {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    let captured = Captured::default();
    let subscriber = subscriber(json, "trace", captured.clone()).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        // Tests run in parallel, each with a subscriber of its own on its thread; a callsite
        // first hit on another thread may have cached "no interest" before this subscriber
        // existed. Recompute, so that nothing emitted here is dropped.
        tracing::callsite::rebuild_interest_cache();
        emit();
    });
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit_secrets() {
        let span = tracing::info_span!(
            "request",
            request_id = "rid-1",
            session_token = "tok-span-secret"
        );
        let _entered = span.enter();
        tracing::info!(
            password = "hunter2-secret",
            api_key = "mr_live_key_secret",
            code = 123456,
            database_url = "postgres://app:url-secret@db/m",
            user = "alice",
            status_code = 250,
            "signing in to smtp://u:msg-secret@relay"
        );
    }

    fn assert_redacted(output: &str) {
        for secret in [
            "hunter2-secret",
            "mr_live_key_secret",
            "123456",
            "tok-span-secret",
        ] {
            assert!(!output.contains(secret), "{secret} leaked: {output}");
        }
        for kept in ["alice", "250", "rid-1", "signing in"] {
            assert!(output.contains(kept), "{kept} missing: {output}");
        }
    }

    #[test]
    fn json_lines_redact_secrets_and_carry_span_fields() {
        let output = capture(true, emit_secrets);
        assert_redacted(&output);
        let line: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
        assert_eq!(line["request_id"], "rid-1");
        assert_eq!(line["password"], REDACTED);
        assert_eq!(line["message"], "signing in to smtp://[redacted]@relay");
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn text_lines_redact_secrets() {
        assert_redacted(&capture(false, emit_secrets));
    }
}
