//! The PATCH dialects of Okta and Entra ID (docs: scim.md §3) and the RFC's error types.

use provisioner_core::scim::{ScimAttributes, ScimEmail};
use serde_json::{Value, json};

use super::*;

fn ann() -> ScimAttributes {
    ScimAttributes {
        user_name: "ann@example.com".into(),
        external_id: Some("00u1".into()),
        given_name: Some("Ann".into()),
        family_name: Some("Lee".into()),
        formatted_name: None,
        display_name: Some("Ann Lee".into()),
        emails: vec![ScimEmail {
            value: "ann@example.com".into(),
            kind: Some("work".into()),
            primary: true,
        }],
        active: true,
    }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_URN], "Operations": ops})
}

#[track_caller]
fn ok(current: &ScimAttributes, ops: Value) -> ScimAttributes {
    apply_patch(current, &patch(ops)).unwrap_or_else(|e| panic!("{e}: {}", e.body()))
}

#[track_caller]
fn fails(current: &ScimAttributes, body: Value, scim_type: &str) {
    let e = apply_patch(current, &body).expect_err("must fail");
    assert_eq!(e.status(), 400, "{}", e.body());
    assert_eq!(e.body()["scimType"], scim_type, "{}", e.body());
}

#[test]
fn okta_deactivates_with_a_no_path_replace() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!(
        a,
        ScimAttributes {
            active: false,
            ..ann()
        }
    );
    let b = ok(&a, json!([{"op": "replace", "value": {"active": true}}]));
    assert!(b.active);
}

#[test]
fn okta_password_sync_is_ignored() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "value": {"password": "hunter2"}}]),
    );
    assert_eq!(a, ann());
}

#[test]
fn entra_default_dialect_uses_capitalised_ops_and_string_booleans() {
    for (v, want) in [
        ("False", false),
        ("false", false),
        ("FALSE", false),
        ("True", true),
    ] {
        let a = ok(
            &ann(),
            json!([{"op": "Replace", "path": "active", "value": v}]),
        );
        assert_eq!(a.active, want, "{v}");
    }
    let a = ok(
        &ann(),
        json!([
            {"op": "Add", "path": "displayName", "value": "Ann B. Lee"},
            {"op": "Replace", "path": "name.familyName", "value": "Lee-Smith"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@example.com"},
            {"op": "Replace", "path": "userName", "value": "ann.lee@example.com"},
            {"op": "Replace", "path": "externalId", "value": "ann.lee"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "ML"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "x"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
            {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1"},
            {"op": "Remove", "path": "members", "value": [{"value": "x"}]}
        ]),
    );
    assert_eq!(a.display_name.as_deref(), Some("Ann B. Lee"));
    assert_eq!(a.family_name.as_deref(), Some("Lee-Smith"));
    assert_eq!(a.emails.len(), 1);
    assert_eq!(a.emails[0].value, "ann.lee@example.com");
    assert!(a.emails[0].primary);
    assert_eq!(a.user_name, "ann.lee@example.com");
    assert_eq!(a.external_id.as_deref(), Some("ann.lee"));
}

#[test]
fn entra_flagged_dialect_puts_dotted_and_urn_keys_in_a_no_path_replace() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "value": {
            "displayName": "Ann L.",
            "name.givenName": "Annie",
            "name.familyName": "Lee",
            "urn:ietf:params:scim:schemas:core:2.0:User:name.formatted": "Annie Lee",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "ml"},
            "emails[type eq \"work\"].value": "annie@example.com",
            "active": false
        }}]),
    );
    assert_eq!(a.display_name.as_deref(), Some("Ann L."));
    assert_eq!(a.given_name.as_deref(), Some("Annie"));
    assert_eq!(a.formatted_name.as_deref(), Some("Annie Lee"));
    assert_eq!(a.emails[0].value, "annie@example.com");
    assert!(!a.active);
}

#[test]
fn a_core_urn_object_in_a_no_path_value_applies_its_members() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "value": {
            "urn:ietf:params:scim:schemas:core:2.0:User": {"displayName": "X", "active": "false"}
        }}]),
    );
    assert_eq!(a.display_name.as_deref(), Some("X"));
    assert!(!a.active);
}

#[test]
fn urn_qualified_paths_address_the_core_attributes() {
    let a = ok(
        &ann(),
        json!([
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", "value": "Annie"},
            {"op": "replace", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:active", "value": false}
        ]),
    );
    assert_eq!(a.given_name.as_deref(), Some("Annie"));
    assert!(!a.active);
}

#[test]
fn a_work_email_replace_adds_one_when_there_is_none() {
    let mut current = ann();
    current.emails.clear();
    let a = ok(
        &current,
        json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"}]),
    );
    assert_eq!(
        a.emails,
        vec![ScimEmail {
            value: "new@example.com".into(),
            kind: Some("work".into()),
            primary: false
        }]
    );
    // A home address is not a work address: a work one is added beside it.
    current.emails.push(ScimEmail {
        value: "home@example.com".into(),
        kind: Some("home".into()),
        primary: true,
    });
    let b = ok(
        &current,
        json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "w@example.com"}]),
    );
    assert_eq!(b.emails.len(), 2);
    assert_eq!(b.emails[1].kind.as_deref(), Some("work"));
}

#[test]
fn filtered_emails_are_replaced_merged_and_removed() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "path": "emails[type eq \"WORK\"]", "value": {"value": "x@example.com"}}]),
    );
    assert_eq!(a.emails[0].value, "x@example.com");
    assert_eq!(a.emails[0].kind.as_deref(), Some("work"));
    let b = ok(
        &ann(),
        json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": "false"}]),
    );
    assert!(!b.emails[0].primary);
    let c = ok(
        &ann(),
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
    );
    assert!(c.emails.is_empty());
    let d = ok(
        &ann(),
        json!([{"op": "remove", "path": "emails[value eq \"ANN@example.com\" and primary eq true]"}]),
    );
    assert!(d.emails.is_empty());
    let e = ok(
        &ann(),
        json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
    );
    assert_eq!(e, ann(), "removing nothing changes nothing");
    let f = ok(
        &ann(),
        json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"value": "h@example.com", "primary": true}}]),
    );
    assert_eq!(f.emails.len(), 2);
    assert!(
        f.emails[1].primary && !f.emails[0].primary,
        "one primary only"
    );
}

#[test]
fn whole_emails_are_added_replaced_and_removed() {
    let added = ok(
        &ann(),
        json!([{"op": "add", "path": "emails", "value": [
            {"value": "h@example.com", "type": "home"},
            {"value": "ANN@example.com", "type": "work", "primary": true}
        ]}]),
    );
    assert_eq!(added.emails.len(), 2, "the same address is not added twice");
    let replaced = ok(
        &ann(),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "h@example.com"}]}]),
    );
    assert_eq!(replaced.emails.len(), 1);
    assert_eq!(replaced.emails[0].kind, None);
    let removed = ok(&ann(), json!([{"op": "remove", "path": "emails"}]));
    assert!(removed.emails.is_empty());
    let one_removed = ok(
        &added,
        json!([{"op": "remove", "path": "emails", "value": [{"value": "h@example.com"}]}]),
    );
    assert_eq!(one_removed.emails, ann().emails);
    let no_path = ok(&ann(), json!([{"op": "replace", "value": {"emails": []}}]));
    assert!(no_path.emails.is_empty());
}

#[test]
fn name_as_a_whole_merges_and_removes() {
    let a = ok(
        &ann(),
        json!([{"op": "replace", "path": "name", "value": {"formatted": "Ann Lee", "middleName": "B"}}]),
    );
    assert_eq!(
        a.given_name.as_deref(),
        Some("Ann"),
        "unnamed sub-attributes stay"
    );
    assert_eq!(a.formatted_name.as_deref(), Some("Ann Lee"));
    let b = ok(&ann(), json!([{"op": "remove", "path": "name"}]));
    assert_eq!((b.given_name, b.family_name), (None, None));
    let c = ok(
        &ann(),
        json!([{"op": "add", "value": {"name": {"givenName": "Annie"}}}]),
    );
    assert_eq!(c.given_name.as_deref(), Some("Annie"));
    assert_eq!(c.family_name.as_deref(), Some("Lee"));
    let d = ok(
        &ann(),
        json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.middleName"}]),
    );
    assert_eq!(d.given_name, None);
}

#[test]
fn simple_attributes_are_removed_and_cleared_by_null_or_empty() {
    let a = ok(
        &ann(),
        json!([
            {"op": "remove", "path": "displayName"},
            {"op": "remove", "path": "externalId"},
            {"op": "replace", "path": "name.familyName", "value": null},
            {"op": "replace", "path": "name.givenName", "value": ""}
        ]),
    );
    assert_eq!(a.display_name, None);
    assert_eq!(a.external_id, None);
    assert_eq!((a.given_name, a.family_name), (None, None));
}

#[test]
fn unknown_attributes_are_ignored() {
    let a = ok(
        &ann(),
        json!([
            {"op": "add", "path": "roles", "value": [{"value": "admin"}]},
            {"op": "replace", "path": "locale", "value": "en"},
            {"op": "remove", "path": "title"},
            {"op": "replace", "value": {"nickName": "A", "meta": {}, "id": "other", "schemas": []}}
        ]),
    );
    assert_eq!(a, ann());
}

#[test]
fn ops_and_member_names_are_case_insensitive() {
    let body = json!({"SCHEMAS": [PATCH_OP_URN.to_uppercase()], "operations": [
        {"OP": "REPLACE", "PATH": "DisplayName", "VALUE": "Z"}
    ]});
    assert_eq!(
        apply_patch(&ann(), &body).unwrap().display_name.as_deref(),
        Some("Z")
    );
}

#[test]
fn a_bad_active_value_is_invalid_value() {
    for v in [json!("yes"), json!(0), json!(null), json!({"x": 1})] {
        fails(
            &ann(),
            patch(json!([{"op": "replace", "path": "active", "value": v}])),
            "invalidValue",
        );
    }
    fails(
        &ann(),
        patch(json!([{"op": "replace", "value": {"active": "no"}}])),
        "invalidValue",
    );
}

#[test]
fn user_name_cannot_be_removed_or_emptied() {
    fails(
        &ann(),
        patch(json!([{"op": "remove", "path": "userName"}])),
        "mutability",
    );
    fails(
        &ann(),
        patch(json!([{"op": "remove", "path": "active"}])),
        "mutability",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "userName", "value": ""}])),
        "invalidValue",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "value": {"userName": null}}])),
        "invalidValue",
    );
}

#[test]
fn remove_without_a_path_is_no_target() {
    fails(&ann(), patch(json!([{"op": "remove"}])), "noTarget");
    fails(
        &ann(),
        patch(json!([{"op": "remove", "value": {"displayName": "x"}}])),
        "noTarget",
    );
}

#[test]
fn a_malformed_message_is_invalid_syntax() {
    fails(
        &ann(),
        json!({"Operations": [{"op": "replace", "value": {"active": false}}]}),
        "invalidSyntax",
    );
    fails(
        &ann(),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": []}),
        "invalidSyntax",
    );
    fails(&ann(), patch(json!([])), "invalidSyntax");
    fails(&ann(), json!({"schemas": [PATCH_OP_URN]}), "invalidSyntax");
    fails(&ann(), patch(json!({"op": "replace"})), "invalidSyntax");
    fails(
        &ann(),
        patch(json!([{"op": "move", "path": "active", "value": true}])),
        "invalidSyntax",
    );
    fails(&ann(), patch(json!(["replace"])), "invalidSyntax");
    fails(
        &ann(),
        patch(json!([{"op": "replace", "value": "x"}])),
        "invalidSyntax",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "displayName"}])),
        "invalidSyntax",
    );
    fails(&ann(), json!([]), "invalidSyntax");
}

#[test]
fn a_malformed_path_is_invalid_path() {
    for p in [
        "emails[type eq \"work\"",
        "emails[type eq]",
        "emails[type co \"w\"].value",
        "emails[type eq \"work\"].",
        "active.value",
        "userName[value eq \"x\"]",
        "name[givenName eq \"x\"]",
        "1abc",
        "display name",
        "emails..value",
    ] {
        fails(
            &ann(),
            patch(json!([{"op": "replace", "path": p, "value": "x"}])),
            "invalidPath",
        );
    }
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": 5, "value": "x"}])),
        "invalidPath",
    );
}

#[test]
fn wrong_value_types_are_invalid_value() {
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "displayName", "value": 5}])),
        "invalidValue",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "name", "value": "Ann"}])),
        "invalidValue",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "emails", "value": "a@b.c"}])),
        "invalidValue",
    );
    fails(
        &ann(),
        patch(json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": "a@b.c"}])),
        "invalidValue",
    );
}

#[test]
fn a_filtered_sub_attribute_with_nothing_to_add_is_no_target() {
    let mut current = ann();
    current.emails.clear();
    fails(
        &current,
        patch(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}]),
        ),
        "noTarget",
    );
}

#[test]
fn the_operations_apply_in_order_on_a_copy() {
    let current = ann();
    let a = ok(
        &current,
        json!([
            {"op": "replace", "path": "displayName", "value": "One"},
            {"op": "replace", "path": "displayName", "value": "Two"}
        ]),
    );
    assert_eq!(a.display_name.as_deref(), Some("Two"));
    // A failing operation leaves the input as it was (core re-runs the engine).
    let _ = apply_patch(
        &current,
        &patch(
            json!([{"op": "replace", "path": "displayName", "value": "Three"}, {"op": "remove"}]),
        ),
    );
    assert_eq!(current, ann());
}
