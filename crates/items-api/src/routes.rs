//! Which route a request is for. The table here is the single list of routes; the OpenAPI test
//! checks the published description against it.

use crate::problem::ApiError;
use http::Method;

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /items`.
    ListItems,
    /// `POST /items`.
    CreateItem,
    /// `GET /items/{id}`.
    GetItem(i64),
    /// `PUT /items/{id}`.
    ReplaceItem(i64),
    /// `DELETE /items/{id}`.
    DeleteItem(i64),
    /// `GET /health`.
    Health,
    /// `GET /health/db`.
    HealthDb,
}

/// Every route template with its methods, as served.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/items", &["GET", "POST"]),
    ("/items/{id}", &["GET", "PUT", "DELETE"]),
    ("/health", &["GET"]),
    ("/health/db", &["GET"]),
];

impl Route {
    /// The route template, for logs and metrics.
    pub fn template(&self) -> &'static str {
        match self {
            Self::ListItems | Self::CreateItem => "/items",
            Self::GetItem(_) | Self::ReplaceItem(_) | Self::DeleteItem(_) => "/items/{id}",
            Self::Health => "/health",
            Self::HealthDb => "/health/db",
        }
    }
}

/// Strips the API Gateway stage from the path when it is there (lambda_http puts it in front of
/// REST and HTTP API paths unless the stage is `$default`). Returns the path and the prefix removed.
pub fn strip_stage<'a>(path: &'a str, stage: Option<&str>) -> (&'a str, &'a str) {
    if let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default")
        && let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(stage))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return (rest, &path[..path.len() - rest.len()]);
    }
    (path, "")
}

/// Matches a stage-free path and method.
///
/// # Errors
/// 404 for an unknown path, 405 (with the allowed methods) for a known path and wrong method,
/// 400 for an id that is not a positive integer.
pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let segments: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    let not_allowed = |path: &'static str, allow: &'static str| ApiError::MethodNotAllowed {
        method: method.as_str().to_owned(),
        path,
        allow,
    };
    match segments.as_slice() {
        ["items"] => match *method {
            Method::GET => Ok(Route::ListItems),
            Method::POST => Ok(Route::CreateItem),
            _ => Err(not_allowed("/items", "GET, POST")),
        },
        ["items", id] => {
            // The method is checked first: PATCH /items/abc is a 405, not a 400.
            let build: fn(i64) -> Route = match *method {
                Method::GET => Route::GetItem,
                Method::PUT => Route::ReplaceItem,
                Method::DELETE => Route::DeleteItem,
                _ => return Err(not_allowed("/items/{id}", "GET, PUT, DELETE")),
            };
            Ok(build(parse_id(id)?))
        }
        ["health"] => match *method {
            Method::GET => Ok(Route::Health),
            _ => Err(not_allowed("/health", "GET")),
        },
        ["health", "db"] => match *method {
            Method::GET => Ok(Route::HealthDb),
            _ => Err(not_allowed("/health/db", "GET")),
        },
        _ => Err(ApiError::NotFound(format!("no route for {}", truncate(path, 200)))),
    }
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::BadRequest(format!(
            "item id must be a positive whole number no larger than {}, got {:?}",
            i64::MAX,
            truncate(raw, 40)
        ))),
    }
}

/// Cuts user input echoed in messages to a bounded length (at a character boundary).
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_method_and_path() {
        assert_eq!(route(&Method::GET, "/items"), Ok(Route::ListItems));
        assert_eq!(route(&Method::POST, "/items/"), Ok(Route::CreateItem));
        assert_eq!(route(&Method::GET, "/items/42"), Ok(Route::GetItem(42)));
        assert_eq!(route(&Method::PUT, "/items/42"), Ok(Route::ReplaceItem(42)));
        assert_eq!(route(&Method::DELETE, "/items/42"), Ok(Route::DeleteItem(42)));
        assert_eq!(route(&Method::GET, "/health"), Ok(Route::Health));
        assert_eq!(route(&Method::GET, "/health/db"), Ok(Route::HealthDb));
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let err = route(&Method::PATCH, "/items/abc").unwrap_err();
        assert!(matches!(
            err,
            ApiError::MethodNotAllowed {
                allow: "GET, PUT, DELETE",
                ..
            }
        ));
        assert!(matches!(
            route(&Method::DELETE, "/items"),
            Err(ApiError::MethodNotAllowed { allow: "GET, POST", .. })
        ));
    }

    #[test]
    fn bad_ids_are_400_and_unknown_paths_404() {
        for id in ["abc", "0", "-1", "1.5", "99999999999999999999", "1e3", " 1", "%31"] {
            assert!(
                matches!(
                    route(&Method::GET, &format!("/items/{id}")),
                    Err(ApiError::BadRequest(_))
                ),
                "{id:?}"
            );
        }
        assert_eq!(
            route(&Method::GET, "/items/"),
            Ok(Route::ListItems),
            "a trailing slash is the list"
        );
        assert!(matches!(route(&Method::GET, "/itemz"), Err(ApiError::NotFound(_))));
        assert!(matches!(route(&Method::GET, "/items/1/2"), Err(ApiError::NotFound(_))));
        assert!(matches!(route(&Method::GET, "/"), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn stage_prefix_is_stripped_only_when_it_is_the_stage() {
        assert_eq!(strip_stage("/Prod/items", Some("Prod")), ("/items", "/Prod"));
        assert_eq!(strip_stage("/Prod", Some("Prod")), ("", "/Prod"));
        assert_eq!(
            strip_stage("/Production/items", Some("Prod")),
            ("/Production/items", "")
        );
        assert_eq!(strip_stage("/items", Some("$default")), ("/items", ""));
        assert_eq!(strip_stage("/items", None), ("/items", ""));
        // A multi-byte character where the stage would end is compared, not sliced through.
        assert_eq!(strip_stage("/aé/items", Some("ab")), ("/aé/items", ""));
        assert_eq!(strip_stage("/é/items", Some("é")), ("/items", "/é"));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("éééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
