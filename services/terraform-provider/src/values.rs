//! Reading a resource's state, plan and configuration: the values every
//! resource needs known, the import ids of a tenant's keys and issuers, and
//! which arguments changed (each of them forces a replacement where the API
//! cannot change a thing in place).

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::diagnostics::error;

/// The object of a state that is not null, or an error.
pub fn known<T>(diags: &mut Diagnostics, state: Value<T>, resource: &str) -> Option<T> {
    let object = state.as_option();
    if object.is_none() {
        error(
            diags,
            format!("{resource}: no state"),
            "",
            AttributePath::root(),
        );
    }
    object
}

/// The string value of `attribute`, or an error on it.
pub fn string<'s>(
    diags: &mut Diagnostics,
    value: &'s Value<String>,
    attribute: &'static str,
) -> Option<&'s str> {
    let s = value.as_ref_option().map(String::as_str);
    if s.is_none() {
        error(
            diags,
            format!("`{attribute}` has no value"),
            "",
            AttributePath::new(attribute),
        );
    }
    s
}

/// The object that must have come back, or an error saying why it did not.
pub fn must_exist<T>(
    diags: &mut Diagnostics,
    found: Option<T>,
    summary: String,
    detail: &str,
) -> Option<Value<T>> {
    if found.is_none() {
        error(diags, summary, detail, AttributePath::root());
    }
    found.map(Value::Value)
}

/// `<tenant_id>/<id>`, the import id of what belongs to a tenant; an error
/// naming the expected form otherwise.
pub fn tenant_and_id<'i>(
    diags: &mut Diagnostics,
    import_id: &'i str,
    what: &str,
) -> Option<(&'i str, &'i str)> {
    let parts = import_id
        .split_once('/')
        .filter(|(tid, id)| !tid.is_empty() && !id.is_empty() && !id.contains('/'));
    if parts.is_none() {
        error(
            diags,
            format!("cannot import {what} {import_id:?}: the id is <tenant_id>/<id>"),
            format!("For example: terraform import ADDRESS abcdefghij/<the {what}'s id>."),
            AttributePath::root(),
        );
    }
    parts
}

/// The attributes of `pairs` (name, prior, proposed) whose values differ:
/// for arguments the API cannot change in place, the replacement triggers.
pub fn changed(pairs: &[(&'static str, bool)]) -> Vec<AttributePath> {
    pairs
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| AttributePath::new(*name))
        .collect()
}

/// Whether a value is given in the configuration: set, or not known yet
/// (it comes from another resource), but not null.
pub fn given<T>(value: &Value<T>) -> bool {
    !matches!(value, Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_id_is_a_tenant_and_an_id() {
        let mut diags = Diagnostics::default();
        assert_eq!(
            tenant_and_id(&mut diags, "abcdefghij/6c1f", "API key"),
            Some(("abcdefghij", "6c1f"))
        );
        assert!(diags.errors.is_empty());
        for bad in ["abcdefghij", "/6c1f", "abcdefghij/", "a/b/c"] {
            let mut diags = Diagnostics::default();
            assert_eq!(tenant_and_id(&mut diags, bad, "API key"), None, "{bad}");
            assert!(
                diags.errors[0].summary.contains("<tenant_id>/<id>"),
                "{bad}: {:?}",
                diags.errors[0].summary
            );
        }
    }

    #[test]
    fn only_changed_arguments_trigger_a_replacement() {
        let triggers = changed(&[("tenant_id", false), ("name", true)]);
        assert_eq!(triggers, vec![AttributePath::new("name")]);
        assert!(changed(&[("name", false)]).is_empty());
    }

    #[test]
    fn unknown_counts_as_given_null_does_not() {
        assert!(given(&Value::Value(1)));
        assert!(given(&Value::<i64>::Unknown));
        assert!(!given(&Value::<i64>::Null));
    }
}
