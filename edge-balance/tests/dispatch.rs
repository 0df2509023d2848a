//! The dispatch loop: admission, retries, budget, outcomes, replay.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_balance::{
    Attempts, BalancerConfig, Classify, Connect, ConnectOnly, Dispatch, DispatchConfig,
    DispatchError, DispatchLayer, Dispatcher, EndpointSet, HttpStatus, Outcome, Policy,
    ReplayRequest, RetryBudget,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

type Log = Arc<Mutex<Vec<(u16, Outcome)>>>;

fn dispatcher(ports: &[u16], config: DispatchConfig) -> (Dispatcher<u16, u16>, Log) {
    let d = Dispatcher::new(
        EndpointSet::new(),
        Policy::RoundRobin,
        BalancerConfig::default(),
        config,
    );
    for &p in ports {
        d.insert(p, p, 1, true);
    }
    let log: Log = Arc::default();
    let l = log.clone();
    (
        d.on_outcome(move |k, o| l.lock().unwrap().push((*k, o))),
        log,
    )
}

/// An error that says whether the endpoint was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fail {
    Refused,
    Reset,
    /// The connection closed before an answer.
    Closed,
    /// The request's body failed.
    BodyAborted,
}

#[derive(Debug, Clone, Copy)]
struct ByKind;
impl<B> Classify<Response<B>, Fail> for ByKind {
    fn response(&self, rsp: &Response<B>) -> Outcome {
        Classify::<Response<B>, Fail>::response(&HttpStatus, rsp)
    }
    fn error(&self, e: &Fail) -> Outcome {
        match e {
            Fail::Refused => Outcome::ConnectFailure,
            Fail::Reset => Outcome::Failure,
            Fail::Closed => Outcome::Closed,
            Fail::BodyAborted => Outcome::RequestFault,
        }
    }
}

/// Endpoints 1 and 2 behave as `bad` says; 3 answers 200 with the body it got.
fn backend(
    bad: Fail,
) -> impl tower::Service<
    (u16, Request<edge_balance::ReplayBody<Full<Bytes>>>),
    Response = Response<Bytes>,
    Error = Fail,
    Future = impl Send,
> + Clone
+ Send
+ Sync {
    service_fn(move |(port, req): (u16, Request<_>)| async move {
        if port != 3 {
            return Err(bad);
        }
        let body = BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
        Ok(Response::new(body))
    })
}

async fn replayable(method: Method, body: &'static str) -> ReplayRequest<Full<Bytes>> {
    let req = Request::builder()
        .method(method)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    ReplayRequest::buffer(req, 1024).await.unwrap()
}

#[tokio::test]
async fn connect_failures_retry_on_endpoints_not_yet_tried() {
    let (d, log) = dispatcher(&[1, 2, 3], DispatchConfig::default());
    let req = replayable(Method::POST, "hello").await;
    let served = d
        .dispatch(&backend(Fail::Refused), req, &ByKind)
        .await
        .unwrap();
    assert_eq!(
        served.response.body(),
        "hello",
        "the buffered body is sent again"
    );
    assert_eq!((served.attempts, *served.lease.key()), (3, 3));
    assert_eq!(
        *log.lock().unwrap(),
        [
            (1, Outcome::ConnectFailure),
            (2, Outcome::ConnectFailure),
            (3, Outcome::Success)
        ]
    );
    let stats = d.set().stats(&1).unwrap();
    assert_eq!((stats.picks(), stats.errors()), (1, 1));
}

#[tokio::test]
async fn a_failure_after_sending_retries_only_idempotent_requests() {
    let (d, _) = dispatcher(&[1, 2, 3], DispatchConfig::default());
    let post = replayable(Method::POST, "x").await;
    let e = d
        .dispatch(&backend(Fail::Reset), post, &ByKind)
        .await
        .unwrap_err();
    assert!(matches!(e.error, DispatchError::Endpoint(Fail::Reset)));
    assert_eq!((e.attempts, e.endpoint), (1, Some(1)));
    let get = replayable(Method::GET, "").await;
    let served = d
        .dispatch(&backend(Fail::Reset), get, &ByKind)
        .await
        .unwrap();
    assert_eq!(served.attempts, 2);
}

/// A single endpoint whose first `closes` attempts end `Closed` (a
/// kept-alive connection closed as it was reused), then it answers.
fn closes_then_answers(
    closes: usize,
) -> impl tower::Service<
    (u16, Request<edge_balance::ReplayBody<Full<Bytes>>>),
    Response = Response<Bytes>,
    Error = Fail,
    Future = impl Send,
> + Clone {
    let calls = Arc::new(Mutex::new(0usize));
    service_fn(move |(_, req): (u16, Request<_>)| {
        let calls = calls.clone();
        async move {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            if n <= closes {
                return Err(Fail::Closed);
            }
            let body = BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
            Ok(Response::new(body))
        }
    })
}

#[tokio::test]
async fn a_closed_connection_is_resent_once_outside_the_retries() {
    // No retries at all, and a budget that allows none: the one resend of an
    // idempotent request still goes, to the same (only) endpoint.
    let cfg = DispatchConfig::default().max_attempts(1);
    let (d, log) = dispatcher(&[4], cfg);
    let d = d.with_budget(RetryBudget::new(0, 0, 0));
    let get = replayable(Method::GET, "").await;
    let served = d.dispatch(&closes_then_answers(1), get, &ByKind).await;
    let served = served.expect("resent after the close");
    assert_eq!(served.attempts, 2);
    assert_eq!(
        *log.lock().unwrap(),
        [(4, Outcome::Success)],
        "the close is not reported against the endpoint"
    );

    // Only once: a second close is the endpoint's failure.
    log.lock().unwrap().clear();
    let get = replayable(Method::GET, "").await;
    let e = d
        .dispatch(&closes_then_answers(2), get, &ByKind)
        .await
        .unwrap_err();
    assert!(matches!(e.error, DispatchError::Endpoint(Fail::Closed)));
    assert_eq!((e.attempts, e.endpoint), (2, Some(4)));
    assert_eq!(*log.lock().unwrap(), [(4, Outcome::Closed)]);

    // A POST is not sent twice.
    let post = replayable(Method::POST, "x").await;
    let e = d
        .dispatch(&closes_then_answers(1), post, &ByKind)
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 1);
}

#[tokio::test]
async fn a_streamed_body_is_sent_once() {
    let (d, _) = dispatcher(&[1, 3], DispatchConfig::default());
    let req = Request::new(Full::new(Bytes::from_static(b"big")));
    let req = ReplayRequest::buffer(req, 2).await.unwrap();
    assert!(!req.is_replayable());
    let e = d
        .dispatch(&backend(Fail::Refused), req, &ByKind)
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 1, "its body went to the first attempt");
    assert!(matches!(e.error, DispatchError::Endpoint(Fail::Refused)));
}

#[tokio::test]
async fn a_5xx_answer_is_returned_and_counted_as_a_failure() {
    let (d, log) = dispatcher(&[7], DispatchConfig::default());
    let svc = service_fn(|(_, _): (u16, Request<_>)| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(())
                .unwrap(),
        )
    });
    let req = replayable(Method::GET, "").await;
    let served = d.dispatch(&svc, req, &HttpStatus).await.unwrap();
    assert_eq!(served.outcome, Outcome::Status5xx);
    assert_eq!(*log.lock().unwrap(), [(7, Outcome::Status5xx)]);
    assert_eq!(d.set().stats(&7).unwrap().errors(), 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_end_http_requests_but_connects_retry() {
    let cfg = DispatchConfig::default().attempt_timeout(Some(Duration::from_secs(1)));
    let (d, log) = dispatcher(&[1, 2], cfg);
    fn slow<R: Send>()
    -> impl tower::Service<(u16, R), Response = Response<()>, Error = Infallible> + Clone {
        service_fn(|(port, _): (u16, R)| async move {
            if port == 1 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, Infallible>(Response::new(()))
        })
    }
    let req = replayable(Method::GET, "").await;
    let e = d.dispatch(&slow(), req, &HttpStatus).await.unwrap_err();
    assert!(matches!(e.error, DispatchError::Timeout(t) if t == Duration::from_secs(1)));
    assert_eq!(e.elapsed, Some(Duration::from_secs(1)));
    // A connect may go to the next endpoint.
    let served = d.dispatch(&slow(), Connect, &ConnectOnly).await.unwrap();
    assert_eq!(*served.lease.key(), 2);
    assert_eq!(
        *log.lock().unwrap(),
        [(1, Outcome::Timeout), (2, Outcome::Success)]
    );
}

#[tokio::test]
async fn the_retry_budget_bounds_retries() {
    let cfg = DispatchConfig::default().max_attempts(5);
    let (d, _) = dispatcher(&[1, 2, 4, 5, 6], cfg);
    let d = d.with_budget(RetryBudget::new(0, 2, 2));
    let failing = service_fn(|(_, ()): (u16, ())| async { Err::<(), _>(Fail::Refused) });
    let e = d
        .dispatch(&failing, Connect, &ConnectOnly)
        .await
        .unwrap_err();
    assert_eq!(
        e.attempts, 3,
        "the first attempt and the 2 retries in reserve"
    );
    let e = d
        .dispatch(&failing, Connect, &ConnectOnly)
        .await
        .unwrap_err();
    assert_eq!(e.attempts, 1, "budget spent");
}

#[tokio::test]
async fn no_endpoint_is_a_no_endpoint_error() {
    let (d, log) = dispatcher(&[1], DispatchConfig::default());
    d.set().set_healthy(&1, false);
    let ok = service_fn(|(_, ()): (u16, ())| async { Ok::<_, Infallible>(()) });
    let e = d.dispatch(&ok, Connect, &ConnectOnly).await.unwrap_err();
    assert!(matches!(e.error, DispatchError::NoEndpoint(_)));
    assert!(e.error.is_unavailable());
    assert_eq!(e.attempts, 0);
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_bounded_queue_in_front_of_each_endpoint() {
    let cfg = DispatchConfig::default()
        .max_per_endpoint(1)
        .max_queue(1)
        .queue_timeout(Duration::from_millis(200))
        .max_attempts(1);
    let (d, log) = dispatcher(&[1], cfg);
    let ok = service_fn(|(_, ()): (u16, ())| async { Ok::<_, Infallible>(()) });
    let held = d.dispatch(&ok, Connect, &ConnectOnly).await.unwrap();
    let target = d.set().snapshot().endpoints()[0].value().clone();
    assert_eq!(target.active(), 1);
    // The second waits in the queue; the third finds it full.
    let waiter = {
        let d = d.clone();
        tokio::spawn(async move {
            d.dispatch(&ok, Connect, &ConnectOnly)
                .await
                .map(|s| s.attempts)
        })
    };
    while target.queued() == 0 {
        tokio::task::yield_now().await;
    }
    let e = d.dispatch(&ok, Connect, &ConnectOnly).await.unwrap_err();
    assert!(matches!(e.error, DispatchError::QueueFull));
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    // The slot is free again; a wait past the queue timeout fails.
    let held = d.dispatch(&ok, Connect, &ConnectOnly).await.unwrap();
    let e = d.dispatch(&ok, Connect, &ConnectOnly).await.unwrap_err();
    assert!(matches!(e.error, DispatchError::QueueTimeout(_)));
    drop(held);
    assert_eq!(target.active(), 0);
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .all(|(_, o)| *o == Outcome::Success)
    );
}

#[tokio::test]
async fn as_a_tower_service_and_layer() {
    let (d, _) = dispatcher(&[1, 3], DispatchConfig::default());
    let svc = DispatchLayer::new(d.clone(), ByKind).layer(backend(Fail::Refused));
    let req = replayable(Method::PUT, "body").await;
    let served = svc.oneshot(req).await.unwrap();
    assert_eq!(served.response.body(), "body");
    let direct = Dispatch::new(d, backend(Fail::Refused), ByKind);
    let served = direct
        .oneshot(replayable(Method::GET, "").await)
        .await
        .unwrap();
    assert_eq!(*served.lease.key(), 3);
}

#[tokio::test]
async fn replay_requests_set_content_length_and_keep_the_head() {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/up?x=1")
        .header("x-a", "1")
        .body(Full::new(Bytes::from_static(b"abc")))
        .unwrap();
    let mut r = ReplayRequest::buffer(req, 16).await.unwrap();
    for _ in 0..2 {
        let a = r.next_attempt().unwrap();
        assert_eq!(a.uri(), "/up?x=1");
        assert_eq!(a.headers()["x-a"], "1");
        assert_eq!(a.headers()[http::header::CONTENT_LENGTH], "3");
        let body = BodyExt::collect(a.into_body()).await.unwrap().to_bytes();
        assert_eq!(body, "abc");
    }
    assert!(r.may_retry(Outcome::ConnectFailure));
    assert!(!r.may_retry(Outcome::Failure), "POST is not idempotent");
    assert!(!r.may_retry(Outcome::Timeout));
    let empty = Request::new(Full::new(Bytes::new()));
    let mut r = ReplayRequest::buffer(empty, 0).await.unwrap();
    let a = r.next_attempt().unwrap();
    assert!(!a.headers().contains_key(http::header::CONTENT_LENGTH));
    assert!(http_body::Body::is_end_stream(a.body()));
}

/// A body of `n` one-byte frames, each the only view of its own 4 KiB
/// buffer (as tiny TLS records arrive); counts the buffers alive.
struct TinyFrames {
    left: usize,
    alive: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

struct Owner(Vec<u8>, Arc<std::sync::atomic::AtomicUsize>);
impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0[..1]
    }
}
impl Drop for Owner {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl http_body::Body for TinyFrames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        let now = self.alive.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let owner = Owner(vec![b'x'; 4096], self.alive.clone());
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_owner(owner)))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left as u64)
    }
}

#[tokio::test]
async fn a_body_of_tiny_frames_is_copied_into_one_buffer() {
    let (alive, most) = (Arc::default(), Arc::default());
    let body = TinyFrames {
        left: 1000,
        alive: Arc::clone(&alive),
        most: Arc::clone(&most),
    };
    let mut r = ReplayRequest::buffer(Request::new(body), 4096)
        .await
        .unwrap();
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(alive.load(SeqCst), 0, "no frame kept");
    assert!(
        most.load(SeqCst) <= 2,
        "frames held at once: {}",
        most.load(SeqCst)
    );
    let a = r.next_attempt().unwrap();
    let got = BodyExt::collect(a.into_body()).await.unwrap().to_bytes();
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn a_request_fault_is_neither_retried_nor_counted_against_the_endpoint() {
    let (d, log) = dispatcher(&[1, 2, 3], DispatchConfig::default());
    let req = replayable(Method::GET, "").await;
    let e = d
        .dispatch(&backend(Fail::BodyAborted), req, &ByKind)
        .await
        .unwrap_err();
    assert!(matches!(
        e.error,
        DispatchError::Endpoint(Fail::BodyAborted)
    ));
    assert_eq!(e.attempts, 1, "not retried, though GET is idempotent");
    assert_eq!(*log.lock().unwrap(), [(1, Outcome::RequestFault)]);
    let stats = d.set().stats(&1).unwrap();
    assert_eq!(
        (stats.picks(), stats.errors(), stats.in_flight()),
        (1, 0, 0)
    );
}
