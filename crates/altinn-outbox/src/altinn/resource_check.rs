//! The two reads that `check --resource` proves a resource with: the sender search, through
//! the client's gates and token like any request, and the resource registry's public read,
//! which needs no token.

use std::time::Instant;

use reqwest::header::ACCEPT;
use reqwest::StatusCode;

use super::wire::IdList;
use super::{faults, parse, retry_after, AltinnClient, ApiError, RESOURCE_REGISTRY, SEARCH};
use crate::codes::Code;
use crate::metrics::{self, System};

/// The resource registry's public read of one resource, under the platform URL.
pub(super) const REGISTRY_PATH: &str = "/resourceregistry/api/v1/resource";

impl AltinnClient {
    /// Searches the resource's correspondences as their sender and says how many ids came
    /// back: harmless (it changes nothing), and answered only when the token passes the scope
    /// policy and Altinn Authorization lets this organisation at the resource, which is what
    /// `check --resource` proves. Altinn answers an unknown resource here as one it denies
    /// (4001: its access check finds no owner), and its scope policy for the search also
    /// admits the read scope, so `check` asks the resource registry and reads the configured
    /// scopes for the rest. The daemon's [`faults::Faults`] are left alone: a check is not a send.
    pub async fn search_as_sender(&self, resource_id: &str) -> Result<usize, ApiError> {
        let url = format!("{}/correspondence", self.api);
        let query = [("resourceId", resource_id), ("role", "Sender")];
        let answer = self.send(SEARCH, None, |http| http.get(&url).query(&query)).await;
        let body = answer.map_err(|e| ApiError { resource: Some(resource_id.to_string()), ..e })?;
        let ids: IdList = parse(&body)?;
        Ok(ids.ids.len())
    }

    /// Whether the resource registry knows the resource, from its public read (no token):
    /// Correspondence itself looks resources up there and answers 1036 when it finds none.
    pub async fn resource_known(&self, resource_id: &str) -> Result<bool, ApiError> {
        let mut url = url::Url::parse(&self.registry).map_err(|e| ApiError::permanent(Code::Url, e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| ApiError::permanent(Code::Url, "the platform URL cannot take a path"))?
            .push(faults::bare(resource_id));
        let started = Instant::now();
        let result = self.http.get(url).header(ACCEPT, "application/json").send().await;
        metrics::request_done(System::Altinn, RESOURCE_REGISTRY, started, &result);
        let response = result.map_err(|e| ApiError::from_transport(&e))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            // The registry's controller answers a resource it does not have with no content.
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Ok(false),
            status => {
                let retry_after = retry_after(response.headers());
                let body = response.bytes().await.unwrap_or_default();
                Err(ApiError::from_response(status.as_u16(), retry_after, &body))
            }
        }
    }
}
