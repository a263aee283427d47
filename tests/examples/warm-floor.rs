//! The floor of items-api's warm path through the Runtime API: a `lambda_http` function that
//! answers every event with the body items-api answered to `GET /items?limit=50`, held in memory.
//! The same runtime (`lambda_http::run_concurrent`, as items-api), the same Runtime API, no
//! database and no application code, so `make bench` can set items-api's warm invocation
//! against what any function answering that body must spend.
//!
//! Environment: the Runtime API's (`AWS_LAMBDA_RUNTIME_API`, ...) and `WARM_FLOOR_BODY`, the path
//! of a file holding the body.

use lambda_http::{
    Body, Error, Request, Response,
    http::{HeaderValue, header::CONTENT_TYPE},
    run_concurrent, service_fn,
};
use std::{convert::Infallible, sync::Arc};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let path = std::env::var("WARM_FLOOR_BODY").map_err(|_| "WARM_FLOOR_BODY is not set")?;
    let body: Arc<str> = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read WARM_FLOOR_BODY ({path}): {e}"))?
        .into();
    run_concurrent(service_fn(move |_: Request| {
        let body = body.clone();
        async move {
            let mut response = Response::new(Body::Text(body.to_string()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(response)
        }
    }))
    .await
}
