//! Errors as Terraform diagnostics. Built field by field: tf-provider's
//! constructors append a backtrace to the detail when RUST_BACKTRACE is set
//! in Terraform's environment, which a user should never see.

use tf_provider::{AttributePath, Diagnostic, Diagnostics};

use crate::api::Problem;

/// An error on `attribute` (`AttributePath::root()`: the whole resource).
pub fn error(
    diags: &mut Diagnostics,
    summary: impl Into<String>,
    detail: impl Into<String>,
    attribute: AttributePath,
) {
    diags.add_error(Diagnostic {
        summary: summary.into().into(),
        detail: detail.into().into(),
        attribute,
    });
}

/// The attribute of `attributes` that the API's `detail` is about: the one
/// it starts with (`name must have …`) or names in backticks, or the id of
/// what it did not find (`tenant not found`: `tenant_id`).
pub fn attribute_of(detail: &str, attributes: &[&'static str]) -> Option<&'static str> {
    let missing = detail
        .strip_suffix(" not found")
        .map(|what| format!("{what}_id"));
    attributes.iter().copied().find(|a| {
        detail
            .strip_prefix(a)
            .is_some_and(|rest| rest.starts_with([' ', ':']))
            || detail.contains(&format!("`{a}`"))
            || missing.as_deref() == Some(a)
    })
}

/// The answer of a call made while `doing`: what came back, `Some(None)`
/// when nothing did (a 404: gone, or never there), or `None` with the
/// problem in `diags` on the attribute of `attributes` it names.
pub fn reported<T>(
    diags: &mut Diagnostics,
    doing: &str,
    answer: Result<Option<T>, Problem>,
    attributes: &[&'static str],
) -> Option<Option<T>> {
    match answer {
        Ok(found) => Some(found),
        Err(p) if p.is_not_found() => Some(None),
        Err(p) => {
            problem(diags, doing, &p, attributes);
            None
        }
    }
}

/// `doing` ("cannot create the tenant") failed with `problem`: an error on
/// the attribute the problem names, if it is one of `attributes`.
pub fn problem(
    diags: &mut Diagnostics,
    doing: &str,
    problem: &Problem,
    attributes: &[&'static str],
) {
    let attribute = attribute_of(&problem.detail, attributes)
        .map(AttributePath::new)
        .unwrap_or_else(AttributePath::root);
    let detail = match problem.status {
        Some(status) => format!("The control plane answered {status}."),
        None => String::new(),
    };
    error(
        diags,
        format!("{doing}: {}", problem.detail),
        detail,
        attribute,
    );
}

/// The answer to a creation made while `doing`: what was created, or `None`
/// with the problem in `diags` (a 404 too: what it belongs to is not there,
/// `tenant not found` on `tenant_id`).
pub fn created<T>(
    diags: &mut Diagnostics,
    doing: &str,
    answer: Result<Option<T>, Problem>,
    attributes: &[&'static str],
) -> Option<T> {
    match answer {
        Ok(Some(made)) => Some(made),
        Ok(None) => {
            let summary = format!("{doing}: the API answered nothing");
            error(diags, summary, "", AttributePath::root());
            None
        }
        Err(p) => {
            problem(diags, doing, &p, attributes);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_names_its_attribute_by_its_first_word_or_in_backticks() {
        let attrs = ["name", "tenant_id"];
        assert_eq!(
            attribute_of("name must have 1 to 100 characters", &attrs),
            Some("name")
        );
        assert_eq!(
            attribute_of("`tenant_id` is unknown", &attrs),
            Some("tenant_id")
        );
        assert_eq!(
            attribute_of("names are unique", &attrs),
            None,
            "a word, not a prefix"
        );
        assert_eq!(
            attribute_of("tenant not found", &attrs),
            Some("tenant_id"),
            "what was not found, by its id"
        );
        assert_eq!(attribute_of("token not found", &attrs), None);
    }

    #[test]
    fn a_problem_is_an_error_on_its_attribute_with_the_status_in_the_detail() {
        let mut diags = Diagnostics::default();
        let gone = Problem {
            status: Some(reqwest::StatusCode::BAD_REQUEST),
            detail: "name must have 1 to 100 characters".into(),
        };
        problem(&mut diags, "cannot create the tenant", &gone, &["name"]);
        let error = &diags.errors[0];
        assert_eq!(
            error.summary,
            "cannot create the tenant: name must have 1 to 100 characters"
        );
        assert_eq!(error.detail, "The control plane answered 400 Bad Request.");
        assert_eq!(error.attribute, AttributePath::new("name"));
    }
}
