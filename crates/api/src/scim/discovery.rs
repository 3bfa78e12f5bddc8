//! The discovery documents (RFC 7644 §4, RFC 7643 §5-§7): `ServiceProviderConfig`,
//! `ResourceTypes` and `Schemas`.
//!
//! The User schema lists exactly the attributes the service stores ([`super::resource`]), so
//! a client that generates test values from it (scim2-tester does) exercises only what is
//! supported. Deviations from the RFC's User schema, each true of this service: `active` is
//! `required` (it always has a value: absent on create means `true`, and it cannot be removed,
//! only set to `false`), and `emails.value` is `required` (an address without one is dropped).
//! The schemas of the three discovery resources are listed too, as RFC 7643 §7 defines them.

use serde_json::{Value, json};

use super::resource::USER_URN;

/// URN of the ServiceProviderConfig schema.
pub const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// URN of the ResourceType schema.
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// URN of the Schema schema.
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// URN of the ListResponse message.
pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Largest page a list answers (`filter.maxResults`).
pub const MAX_RESULTS: u32 = 200;

/// A ListResponse holding every item (discovery lists are never paged).
pub fn list_of(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_URN],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A SCIM token of the tenant, issued by an administrator \
                (POST /v1/tenants/{tenant_id}/scim/tokens), sent as Authorization: Bearer <token>.",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

/// The one resource type: `User`.
pub fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_URN],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "An end user: one Clarifai app and one app-scoped key while active",
        "schema": USER_URN,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
    })
}

/// The schemas served: the User schema first, then those of the discovery resources.
pub fn schemas(base: &str) -> Vec<Value> {
    [
        (USER_URN, "User", "User Account", user_attributes()),
        (
            SPC_URN,
            "Service Provider Configuration",
            "Schema for representing the service provider's configuration",
            spc_attributes(),
        ),
        (
            RESOURCE_TYPE_URN,
            "ResourceType",
            "Specifies the schema that describes a SCIM resource type",
            resource_type_attributes(),
        ),
        (
            SCHEMA_URN,
            "Schema",
            "Specifies the schema attributes of a SCIM resource",
            schema_attributes(),
        ),
    ]
    .into_iter()
    .map(|(id, name, description, attributes)| {
        json!({
            "schemas": [SCHEMA_URN],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}
        })
    })
    .collect()
}

/// One attribute definition, with the RFC's defaults (RFC 7643 §2.2) and `readOnly`.
fn attr(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readOnly",
        "returned": "default",
        "uniqueness": "none",
    })
}

/// Builder steps on an attribute definition.
trait Def {
    fn set(self, key: &str, v: Value) -> Value;
    fn rw(self) -> Value;
    fn required(self) -> Value;
    fn multi(self) -> Value;
    fn subs(self, subs: Vec<Value>) -> Value;
}

impl Def for Value {
    fn set(mut self, key: &str, v: Value) -> Value {
        self[key] = v;
        self
    }
    fn rw(self) -> Value {
        self.set("mutability", json!("readWrite"))
    }
    fn required(self) -> Value {
        self.set("required", json!(true))
    }
    fn multi(self) -> Value {
        self.set("multiValued", json!(true))
    }
    fn subs(self, subs: Vec<Value>) -> Value {
        self.set("subAttributes", json!(subs))
    }
}

fn user_attributes() -> Vec<Value> {
    vec![
        attr("userName", "string", "Unique identifier for the User, typically used to sign in; unique within the tenant, compared case-insensitively")
            .rw()
            .required()
            .set("uniqueness", json!("server")),
        attr("name", "complex", "The components of the user's name").rw().subs(vec![
            attr("formatted", "string", "The full name, formatted for display").rw(),
            attr("familyName", "string", "The family name").rw(),
            attr("givenName", "string", "The given name").rw(),
        ]),
        attr("displayName", "string", "The name of the User, suitable for display").rw(),
        attr("emails", "complex", "Email addresses of the User").rw().multi().subs(vec![
            attr("value", "string", "The email address").rw().required(),
            attr("type", "string", "A label: work, home or other")
                .rw()
                .set("canonicalValues", json!(["work", "home", "other"])),
            attr("primary", "boolean", "Whether this is the primary address (at most one is)").rw(),
        ]),
        attr("active", "boolean", "Whether the User holds a working key; false revokes it (or deprovisions, per the tenant's setting)")
            .rw()
            .required(),
        attr("externalId", "string", "The identity provider's identifier of the User")
            .rw()
            .set("caseExact", json!(true)),
    ]
}

fn supported(name: &str, description: &str, extra: Vec<Value>) -> Value {
    let mut subs =
        vec![attr("supported", "boolean", "Whether the feature is supported").required()];
    subs.extend(extra);
    attr(name, "complex", description).required().subs(subs)
}

fn spc_attributes() -> Vec<Value> {
    vec![
        attr(
            "documentationUri",
            "reference",
            "An HTTP-addressable URL pointing to the service provider's help documentation",
        )
        .set("referenceTypes", json!(["external"])),
        supported("patch", "PATCH configuration options", vec![]),
        supported(
            "bulk",
            "Bulk configuration options",
            vec![
                attr(
                    "maxOperations",
                    "integer",
                    "The maximum number of operations",
                )
                .required(),
                attr(
                    "maxPayloadSize",
                    "integer",
                    "The maximum payload size in bytes",
                )
                .required(),
            ],
        ),
        supported(
            "filter",
            "FILTER options",
            vec![
                attr(
                    "maxResults",
                    "integer",
                    "The maximum number of resources returned in a response",
                )
                .required(),
            ],
        ),
        supported("changePassword", "Change password options", vec![]),
        supported("sort", "Sort options", vec![]),
        supported("etag", "ETag options", vec![]),
        attr(
            "authenticationSchemes",
            "complex",
            "The supported authentication schemes",
        )
        .required()
        .multi()
        .subs(vec![
            attr("type", "string", "The authentication scheme").required(),
            attr("name", "string", "The common authentication scheme name").required(),
            attr(
                "description",
                "string",
                "A description of the authentication scheme",
            )
            .required(),
            attr(
                "specUri",
                "reference",
                "An HTTP-addressable URL pointing to the scheme's specification",
            )
            .set("referenceTypes", json!(["external"])),
            attr(
                "documentationUri",
                "reference",
                "An HTTP-addressable URL pointing to the scheme's usage documentation",
            )
            .set("referenceTypes", json!(["external"])),
            attr("primary", "boolean", "Whether this is the preferred scheme"),
        ]),
    ]
}

fn resource_type_attributes() -> Vec<Value> {
    vec![
        attr("id", "string", "The resource type's server unique id"),
        attr("name", "string", "The resource type name").required(),
        attr(
            "description",
            "string",
            "The resource type's human-readable description",
        ),
        attr(
            "endpoint",
            "reference",
            "The resource type's HTTP-addressable endpoint relative to the Base URL",
        )
        .required()
        .set("referenceTypes", json!(["uri"])),
        attr(
            "schema",
            "reference",
            "The resource type's primary/base schema URI",
        )
        .required()
        .set("caseExact", json!(true))
        .set("referenceTypes", json!(["uri"])),
        attr(
            "schemaExtensions",
            "complex",
            "A list of URIs of the resource type's schema extensions",
        )
        .multi()
        .subs(vec![
            attr("schema", "reference", "The URI of a schema extension")
                .required()
                .set("caseExact", json!(true))
                .set("referenceTypes", json!(["uri"])),
            attr("required", "boolean", "Whether the extension is required").required(),
        ]),
    ]
}

/// The sub-attributes of an attribute definition (RFC 7643 §7), `nested` adding
/// `subAttributes` one level down.
fn definition_attributes(nested: bool) -> Vec<Value> {
    let mut v = vec![
        attr("name", "string", "The attribute's name")
            .required()
            .set("caseExact", json!(true)),
        attr("type", "string", "The attribute's data type")
            .required()
            .set(
                "canonicalValues",
                json!([
                    "string",
                    "complex",
                    "boolean",
                    "decimal",
                    "integer",
                    "dateTime",
                    "reference",
                    "binary"
                ]),
            ),
        attr(
            "multiValued",
            "boolean",
            "Whether the attribute is multi-valued",
        )
        .required(),
        attr(
            "description",
            "string",
            "A human-readable description of the attribute",
        ),
        attr("required", "boolean", "Whether the attribute is required"),
        attr(
            "canonicalValues",
            "string",
            "A collection of canonical values",
        )
        .multi(),
        attr(
            "caseExact",
            "boolean",
            "Whether a string attribute is case sensitive",
        ),
        attr(
            "mutability",
            "string",
            "Whether the attribute may be modified",
        )
        .set(
            "canonicalValues",
            json!(["readOnly", "readWrite", "immutable", "writeOnly"]),
        ),
        attr(
            "returned",
            "string",
            "When the attribute is returned in a response",
        )
        .set(
            "canonicalValues",
            json!(["always", "never", "default", "request"]),
        ),
        attr(
            "uniqueness",
            "string",
            "How the service provider enforces uniqueness",
        )
        .set("canonicalValues", json!(["none", "server", "global"])),
        attr(
            "referenceTypes",
            "string",
            "The names of the resource types that may be referenced",
        )
        .multi(),
    ];
    if nested {
        v.push(
            attr(
                "subAttributes",
                "complex",
                "The sub-attributes of a complex attribute",
            )
            .multi()
            .subs(definition_attributes(false)),
        );
    }
    v
}

fn schema_attributes() -> Vec<Value> {
    vec![
        attr("id", "string", "The unique URI of the schema")
            .required()
            .set("caseExact", json!(true)),
        attr("name", "string", "The schema's human-readable name"),
        attr(
            "description",
            "string",
            "The schema's human-readable description",
        ),
        attr(
            "attributes",
            "complex",
            "The service provider's attributes of this schema",
        )
        .required()
        .multi()
        .subs(definition_attributes(true)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_schema_lists_only_the_stored_attributes() {
        let s = schemas("/scim/v2/acme");
        assert_eq!(s[0]["id"], USER_URN);
        let names: Vec<&str> = s[0]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
                "displayName",
                "emails",
                "active",
                "externalId"
            ]
        );
        let user_name = &s[0]["attributes"][0];
        assert_eq!(
            (
                &user_name["required"],
                &user_name["caseExact"],
                &user_name["uniqueness"]
            ),
            (&json!(true), &json!(false), &json!("server"))
        );
        assert_eq!(
            s[0]["meta"]["location"],
            format!("/scim/v2/acme/Schemas/{USER_URN}")
        );
        let ids: Vec<&str> = s.iter().map(|x| x["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [USER_URN, SPC_URN, RESOURCE_TYPE_URN, SCHEMA_URN]);
        assert!(!Value::Array(s).to_string().contains("null"));
    }

    #[test]
    fn the_config_advertises_what_is_supported() {
        let c = service_provider_config("/scim/v2/acme");
        assert_eq!(c["patch"]["supported"], true);
        assert_eq!(
            c["bulk"],
            json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0})
        );
        assert_eq!(c["filter"], json!({"supported": true, "maxResults": 200}));
        assert_eq!(c["etag"]["supported"], false);
        assert_eq!(c["authenticationSchemes"][0]["type"], "oauthbearertoken");
    }

    #[test]
    fn lists_use_integers_and_capital_resources() {
        let l = list_of(vec![user_resource_type("/b")]);
        assert_eq!(l["totalResults"], 1);
        assert_eq!(l["startIndex"], 1);
        assert_eq!(l["Resources"][0]["id"], "User");
        assert_eq!(list_of(vec![])["Resources"], json!([]));
    }
}
