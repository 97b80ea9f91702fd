//! What kit knows about the work in progress: the request (or event) being
//! handled, its id and its trace.
//!
//! kit enters a scope around every HTTP handler and every event handler, so
//! code below them never passes these along by hand: a problem document
//! takes its `request_id` from here, an event recorded in a transaction its
//! `traceparent` ([`crate::db::Tx::record`]), and a call to another service
//! both ([`crate::peer`]).

use std::sync::Arc;

use crate::trace::TraceContext;

/// The work being done: one request, or one event being handled.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The request id (the event id while an event is handled): printable
    /// ASCII, quoted by problem documents and sent on as `x-request-id`.
    pub request_id: Arc<str>,
    pub trace: TraceContext,
}

tokio::task_local! {
    static CURRENT: Scope;
}

impl Scope {
    /// Runs `work` inside this scope.
    pub fn run<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, work)
    }

    /// [`Scope::run`] for work that does not wait.
    pub fn run_sync<T>(self, work: impl FnOnce() -> T) -> T {
        CURRENT.sync_scope(self, work)
    }
}

/// The current request id, when inside a scope.
pub fn request_id() -> Option<Arc<str>> {
    CURRENT.try_with(|s| s.request_id.clone()).ok()
}

/// The current trace, when inside a scope.
pub fn trace() -> Option<TraceContext> {
    CURRENT.try_with(|s| s.trace).ok()
}

/// The `traceparent` value to send on (an event's, a call's), when inside a
/// scope.
pub fn traceparent() -> Option<String> {
    trace().map(|t| t.header_value())
}
