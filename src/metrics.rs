//! Prometheus metrics of the server (DESIGN.md §7, Observability): requests by method,
//! route template and status, request latency, imported rows by outcome and the number
//! of audit events. Labels only ever hold values from fixed vocabularies (route
//! templates, never raw paths), so no personal data or unbounded value reaches them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Outcomes an import row can have; anything else is counted as `other`.
const IMPORT_OUTCOMES: [&str; 6] = ["read", "created", "updated", "unchanged", "suppressed", "rejected"];

/// Methods counted by name; anything else is counted as `OTHER`.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The metrics registry and the handles the server and the import code record into.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: HistogramFamily,
    import_rows: Family<OutcomeLabels, Counter>,
    audit_events: Counter,
    /// Serialises catch-ups of `audit_events` so two scrapes cannot both add a delta.
    audit_catch_up: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily = Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_25, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to answering it, by method and matched route template",
            http_duration.clone(),
        );
        let import_rows = Family::<OutcomeLabels, Counter>::default();
        registry.register("import_rows", "Rows of imported CSV files, by outcome", import_rows.clone());
        let audit_events = Counter::default();
        registry.register(
            "audit_events",
            "Audit events in the log of every workspace, as last observed",
            audit_events.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            import_rows,
            audit_events,
            audit_catch_up: std::sync::Mutex::new(()),
        }
    }

    /// Records one answered request. `route` is the matched route template (for
    /// example `/api/v1/contacts/{id}`), or `unmatched`.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = METHODS.into_iter().find(|m| *m == method).unwrap_or("OTHER");
        self.http_requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method,
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts `n` import rows with an outcome (`read`, `created`, `updated`,
    /// `unchanged`, `suppressed` or `rejected`).
    pub fn import_rows(&self, outcome: &str, n: u64) {
        let outcome = IMPORT_OUTCOMES.into_iter().find(|o| *o == outcome).unwrap_or("other");
        self.import_rows.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
    }

    /// Brings `audit_events_total` up to the number of events in the log. The log is
    /// append-only, so the count only grows and the counter stays monotonic.
    pub fn observe_audit_total(&self, total: u64) {
        let _guard = self.audit_catch_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = self.audit_events.get();
        if total > seen {
            self.audit_events.inc_by(total - seen);
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_outcomes_and_methods_do_not_become_labels() -> Result<(), std::fmt::Error> {
        let m = Metrics::new();
        m.import_rows("alice@example.com", 3);
        m.observe_request("BREW", "unmatched", 404, Duration::from_millis(1));
        let text = m.encode()?;
        assert!(!text.contains("alice"));
        assert!(text.contains("import_rows_total{outcome=\"other\"} 3"));
        assert!(text.contains("method=\"OTHER\""));
        Ok(())
    }

    #[test]
    fn audit_total_only_grows() -> Result<(), std::fmt::Error> {
        let m = Metrics::new();
        m.observe_audit_total(5);
        m.observe_audit_total(3);
        assert!(m.encode()?.contains("audit_events_total 5"));
        Ok(())
    }
}
