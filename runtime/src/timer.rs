//! Waiting for something or a deadline, whichever comes first, on any runtime.

use std::future::Future;
use std::time::Instant;

use futures_lite::future;

use crate::runtime::Runtime;

/// Runs `fut` until `deadline`: `Some(output)` if it finished first, `None` if the
/// deadline came first (then `fut` is dropped, so it must be cancel-safe).
pub async fn until<R: Runtime, F: Future>(rt: &R, deadline: Instant, fut: F) -> Option<F::Output> {
    let sleep = rt.sleep_until(deadline);
    future::or(async { Some(fut.await) }, async {
        sleep.await;
        None
    })
    .await
}
