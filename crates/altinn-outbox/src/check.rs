//! `altinn-outbox check`: the configuration, the key, the database and a token request, and
//! with `--resource ID` (repeatable) whether Altinn accepts the token for each resource; each
//! failure in words an operator can act on, as lines for a terminal or one JSON document.
//!
//! A resource is proved with the sender search (`GET …/correspondence?resourceId=ID&role=Sender`),
//! which changes nothing and is answered only past the scope policy and Altinn Authorization.
//! Two things it cannot tell are settled otherwise: an unknown resource gets the same 4001
//! as a denied one, so the resource registry's public read says which; and the search's
//! scope policy also admits the read scope, so the write scope is read from
//! `maskinporten.scopes` (the token itself is opaque).

use serde::Serialize;

use crate::altinn::{AltinnClient, ApiError, ErrorClass, Fault};
use crate::config::Config;
use crate::{app, outbox};

/// The scopes a sender's token needs: the write scope for the scope policy of initialize,
/// the service-owner scope for the org claim of the exchange.
const SENDER_SCOPES: [&str; 2] = ["altinn:serviceowner", "altinn:correspondence.write"];

/// One general step: `config and key`, `key file`, `database`, `token`, `scopes`, and with
/// events on, `events` (the token may use the Events API).
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What became of one `--resource`.
#[derive(Debug, Serialize)]
pub struct ResourceCheck {
    pub resource: String,
    pub ok: bool,
    /// `missing_scope`, `no_access`, `unknown_caller`, `unknown_resource`, or `error` (it
    /// could not be checked: no token, Altinn unreachable); absent when ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// The code Altinn answered with (`http:403`, `altinn:4001`), when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<&'static str>,
}

/// Everything `check` found; `ok` decides the exit code.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub steps: Vec<Step>,
    pub resources: Vec<ResourceCheck>,
}

impl Report {
    /// One line per step and resource: `ok   name: detail` or `FAIL name: detail`.
    pub fn text(&self) -> String {
        let line =
            |ok: bool, name: &str, detail: &str| format!("{} {name}: {detail}\n", if ok { "ok  " } else { "FAIL" });
        let mut out: String = self.steps.iter().map(|s| line(s.ok, s.step, &s.detail)).collect();
        for r in &self.resources {
            let detail = match (r.fault, r.remedy) {
                (Some(fault), Some(remedy)) => format!("{fault}: {}; {remedy}", r.detail),
                (Some(fault), None) => format!("{fault}: {}", r.detail),
                _ => r.detail.clone(),
            };
            out += &line(r.ok, &format!("resource {}", r.resource), &detail);
        }
        out
    }
}

/// Runs every check; never stops at the first failure, so one run names every problem.
pub async fn check(config: &Config, resources: &[String]) -> Report {
    let mut steps = Vec::new();
    let mut step = |step, ok, detail: String| steps.push(Step { step, ok, detail });
    let ctx = match app::build_context(config) {
        Ok(ctx) => {
            step("config and key", true, "valid".into());
            ctx
        }
        Err(e) => {
            step("config and key", false, e.to_string());
            return Report { ok: false, steps, resources: Vec::new() };
        }
    };
    if let Err(open) = app::key_file_permissions(config) {
        step("key file", false, open.to_string());
    }
    match outbox::migrations_current(&ctx.pool).await {
        Ok(true) => step("database", true, "reachable, migrations current".into()),
        Ok(false) => step("database", false, "reachable, but run `altinn-outbox migrate`".into()),
        Err(e) => step("database", false, e.to_string()),
    }
    match ctx.altinn.tokens().token().await {
        Ok(token) => step("token", true, format!("Altinn token obtained, valid until {}", token.expires_at())),
        Err(e) => step("token", false, e.to_string()),
    }
    let lacking = lacking_scopes(&config.maskinporten.scopes);
    if lacking.is_empty() {
        step("scopes", true, format!("maskinporten.scopes has {}", SENDER_SCOPES.join(" and ")));
    } else {
        step("scopes", false, format!("maskinporten.scopes lacks {}: {}", lacking.join(" and "), SCOPES_REMEDY));
    }
    if config.events.enabled {
        let (ok, detail) = check_events(&ctx.altinn).await;
        step("events", ok, detail);
    }
    let mut checked = Vec::new();
    for resource in resources {
        checked.push(check_resource(&ctx.altinn, resource, !lacking.is_empty()).await);
    }
    let ok = steps.iter().all(|s| s.ok) && checked.iter().all(|r| r.ok);
    Report { ok, steps, resources: checked }
}

const SCOPES_REMEDY: &str =
    "add it (and have Digdir grant it to the Maskinporten client); sends are refused with an empty 403 without it";

fn lacking_scopes(configured: &str) -> Vec<&'static str> {
    SENDER_SCOPES.into_iter().filter(|wanted| !configured.split_whitespace().any(|s| s == *wanted)).collect()
}

/// The Events API answers the list of our subscriptions only to a token with
/// `altinn:events.subscribe` (an empty 403 otherwise), and only to the identity that made them.
async fn check_events(altinn: &AltinnClient) -> (bool, String) {
    match altinn.subscriptions().await {
        Ok(list) => {
            let validated = list.iter().filter(|s| s.validated).count();
            (true, format!("the token may use Altinn Events: {} subscriptions, {validated} validated", list.len()))
        }
        Err(e) if e.fault() == Some(Fault::MissingScope) => (
            false,
            format!(
                "Altinn Events refuses the token ({}): have Digdir grant {} to the Maskinporten client",
                e.code,
                crate::config::EVENTS_SCOPE
            ),
        ),
        Err(e) => (false, format!("Altinn Events could not be asked: {e}")),
    }
}

/// One resource: the sender search, then the resource registry after a 4001.
async fn check_resource(altinn: &AltinnClient, resource: &str, scopes_lacking: bool) -> ResourceCheck {
    let verdict = |fault: Option<&'static str>, code: Option<String>, detail: String, remedy| ResourceCheck {
        resource: resource.to_string(),
        ok: fault.is_none(),
        fault,
        code,
        detail,
        remedy,
    };
    let e = match altinn.search_as_sender(resource).await {
        Ok(_) if scopes_lacking => {
            let fault = Fault::MissingScope;
            let detail = "the search answered, but it also admits the read scope, and sends need \
                          altinn:correspondence.write, which maskinporten.scopes lacks";
            return verdict(Some(fault.label()), None, detail.into(), Some(fault.remedy()));
        }
        Ok(ids) => {
            let detail = format!(
                "Altinn accepts the token and lets this organisation at the resource (the sender search found {ids} \
                 correspondences)"
            );
            return verdict(None, None, detail, None);
        }
        Err(e) => e,
    };
    match e.class {
        ErrorClass::Misconfigured(Fault::NoAccess) => match altinn.resource_known(resource).await {
            Ok(false) => verdict(
                Some("unknown_resource"),
                Some(e.code),
                "the resource registry has no resource with this id (sends would fail with altinn:1036)".into(),
                Some("correct the resource id, or have the resource created in the resource registry"),
            ),
            Ok(true) => no_access(verdict, e, String::new()),
            Err(registry) => no_access(
                verdict,
                e,
                format!(" (or the resource is unknown: the resource registry did not say: {registry})"),
            ),
        },
        ErrorClass::Misconfigured(fault) => {
            verdict(Some(fault.label()), Some(e.code), fault.missing().into(), Some(fault.remedy()))
        }
        _ => verdict(Some("error"), Some(e.code.clone()), format!("could not be checked: {}", e.message), None),
    }
}

fn no_access(
    verdict: impl Fn(Option<&'static str>, Option<String>, String, Option<&'static str>) -> ResourceCheck,
    e: ApiError,
    unsure: String,
) -> ResourceCheck {
    let fault = Fault::NoAccess;
    verdict(Some(fault.label()), Some(e.code), format!("{}{unsure}", fault.missing()), Some(fault.remedy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_scopes_must_hold_both_sender_scopes() {
        assert!(lacking_scopes("altinn:serviceowner altinn:correspondence.write").is_empty());
        assert_eq!(lacking_scopes("altinn:serviceowner altinn:correspondence.read"), ["altinn:correspondence.write"]);
        assert_eq!(lacking_scopes("altinn:serviceowner/instances.read"), SENDER_SCOPES, "whole scopes, not substrings");
    }

    #[test]
    fn each_resource_gets_a_line_naming_its_fault_and_what_to_do() {
        let report = Report {
            ok: false,
            steps: vec![Step { step: "token", ok: true, detail: "obtained".into() }],
            resources: vec![ResourceCheck {
                resource: "a".into(),
                ok: false,
                fault: Some("no_access"),
                code: Some("altinn:4001".into()),
                detail: "denied".into(),
                remedy: Some("ask"),
            }],
        };
        assert_eq!(report.text(), "ok   token: obtained\nFAIL resource a: no_access: denied; ask\n");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["resources"][0]["code"], "altinn:4001");
        assert_eq!(json["steps"][0]["step"], "token");
    }
}
