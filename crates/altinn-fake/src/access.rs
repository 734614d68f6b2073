//! Who the fake lets do what, changeable by a test while the daemon runs: resources Altinn
//! Authorization denies the fake's one organisation, and scopes the fake Maskinporten leaves
//! out of the tokens it issues. Also the resource registry's public read of a resource.
//!
//! Denied resources answer as the real service's initialize and search handlers do: 401
//! ProblemDetails with errorCode 4001, after the resource was
//! found in the resource registry on initialize (an unknown one is 400/1036 there), and for
//! unknown and denied resources alike on the search, whose access check finds no service
//! owner for an unknown resource and denies it.
//!
//! Withheld scopes are where the fake departs from Maskinporten on purpose: the real one
//! refuses a grant for a scope the client was not given (`invalid_scope`), which the token
//! client reports as misconfigured. A token without the write scope still happens (the scope
//! missing from `maskinporten.scopes`, the service-owner registration missing in Altinn),
//! and is fixed outside the daemon while it runs; withholding a scope and granting it later
//! lets a test drive exactly that: Correspondence's empty 403 first, and the scope carried by
//! the next token issued after the grant.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::maskinporten::CONSUMER_ORG;
use super::problem::{empty, json_response, Problem};
use super::{App, FakeConfig};

/// Altinn's text for 4001 (NoAccessToResource).
const NO_ACCESS: &str = "You must use an Altinn token, DialogToken or log in to IDPorten as someone with access to \
                         the resource and organization in Altinn Authorization";

/// The run-time access rules; see the module header.
#[derive(Debug, Default)]
pub struct Access {
    denied_resources: Mutex<HashSet<String>>,
    withheld_scopes: Mutex<HashSet<String>>,
}

fn bare(resource: &str) -> String {
    resource.trim_start_matches("urn:altinn:resource:").to_string()
}

fn lock(set: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Access {
    pub(crate) fn new(config: &FakeConfig) -> Access {
        let access = Access::default();
        config.denied_resources.iter().for_each(|r| access.deny_resource(r));
        config.withheld_scopes.iter().for_each(|s| access.withhold_scope(s));
        access
    }

    /// From now on Altinn Authorization denies the organisation `resource` (401/4001).
    pub fn deny_resource(&self, resource: &str) {
        lock(&self.denied_resources).insert(bare(resource));
    }

    /// The resource's owner gave the organisation access: requests for it go again.
    pub fn allow_resource(&self, resource: &str) {
        lock(&self.denied_resources).remove(&bare(resource));
    }

    /// From now on tokens are issued without `scope`, even when a grant asks for it.
    pub fn withhold_scope(&self, scope: &str) {
        lock(&self.withheld_scopes).insert(scope.to_string());
    }

    /// The scope is granted: tokens issued from now on carry it (those issued before do not).
    pub fn grant_scope(&self, scope: &str) {
        lock(&self.withheld_scopes).remove(scope);
    }

    pub(crate) fn denies(&self, resource: &str) -> bool {
        lock(&self.denied_resources).contains(&bare(resource))
    }

    /// The scopes of a grant that a token issued now carries.
    pub(crate) fn issued_scope(&self, requested: &str) -> String {
        let withheld = lock(&self.withheld_scopes);
        requested.split_whitespace().filter(|s| !withheld.contains(*s)).collect::<Vec<_>>().join(" ")
    }
}

/// Altinn Authorization's refusal of a resource.
pub(crate) fn no_access() -> Problem {
    Problem::domain(4001, NO_ACCESS)
}

fn unknown(config: &FakeConfig, resource: &str) -> bool {
    config.unknown_resources.iter().any(|r| bare(r) == bare(resource))
}

/// The search's access check (CheckAccessAsAny): the resource's service owner must be found
/// and the caller must be allowed; both failures are the same 4001.
pub(crate) fn search_refusal(app: &App, resource: &str) -> Option<Problem> {
    (unknown(&app.config, resource) || app.access.denies(resource)).then(no_access)
}

/// `GET /resourceregistry/api/v1/resource/{id}`: public, no token. Every resource the fake
/// does not list as unknown exists, is a CorrespondenceService and belongs to its one
/// organisation.
pub(crate) async fn resource(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if unknown(&app.config, &id) {
        return empty(404);
    }
    let body = json!({
        "identifier": bare(&id),
        "resourceType": "CorrespondenceService",
        "hasCompetentAuthority": { "organization": CONSUMER_ORG, "orgcode": "digdir",
                                   "name": { "nb": "Digitaliseringsdirektoratet" } },
    });
    json_response(200, &body).into_response()
}
