//! Reading a policy's expression as PostgreSQL stores it (`pg_node_tree`), to decide from
//! its structure, not its text, whether it keeps tenants apart.
//!
//! The stored form is PostgreSQL's node serialization: `{OPEXPR :opno 98 :args (..) ..}`,
//! lists in parentheses, `<>` for null, scalars as tokens (`"` quotes nothing; a backslash
//! escapes the next character). Only the shape matters here, so scalars stay text.

use std::collections::HashMap;

/// One value of a node tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Node(Node),
    List(Vec<Value>),
    Scalar(String),
    Null,
}

/// A node: its type and named fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: String,
    pub(crate) fields: HashMap<String, Value>,
}

impl Node {
    fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    fn scalar(&self, name: &str) -> Option<&str> {
        match self.field(name)? {
            Value::Scalar(text) => Some(text),
            _ => None,
        }
    }

    fn node(&self, name: &str) -> Option<&Node> {
        match self.field(name)? {
            Value::Node(node) => Some(node),
            _ => None,
        }
    }

    fn list(&self, name: &str) -> &[Value] {
        match self.field(name) {
            Some(Value::List(items)) => items,
            _ => &[],
        }
    }
}

/// Splits a serialized tree into tokens: `{ } ( )` alone, everything else up to whitespace
/// or one of those, with backslash escapes kept inside the token.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '{' | '}' | '(' | ')' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Parses a serialized node tree; `None` if it is not well formed.
pub(crate) fn parse(text: &str) -> Option<Value> {
    let tokens = tokens(text);
    let mut position = 0;
    let value = parse_value(&tokens, &mut position)?;
    (position == tokens.len()).then_some(value)
}

fn parse_value(tokens: &[String], position: &mut usize) -> Option<Value> {
    let token = tokens.get(*position)?;
    *position += 1;
    match token.as_str() {
        "{" => {
            let kind = tokens.get(*position)?.clone();
            *position += 1;
            let mut fields = HashMap::new();
            loop {
                let token = tokens.get(*position)?;
                if token == "}" {
                    *position += 1;
                    return Some(Value::Node(Node { kind, fields }));
                }
                let name = token.strip_prefix(':')?.to_owned();
                *position += 1;
                // A field's value runs until the next field name or the node's end; most
                // are one token or one nested value, a few (`:constvalue 4 [ 1 0 0 0 ]`)
                // are several scalars, kept as a list.
                let mut parts = Vec::new();
                while let Some(next) = tokens.get(*position) {
                    if next == "}" || next.starts_with(':') {
                        break;
                    }
                    parts.push(parse_value(tokens, position)?);
                }
                let value = match parts.len() {
                    0 => Value::Null,
                    1 => parts.pop().expect("one part"),
                    _ => Value::List(parts),
                };
                fields.insert(name, value);
            }
        }
        "(" => {
            let mut items = Vec::new();
            loop {
                if tokens.get(*position)? == ")" {
                    *position += 1;
                    return Some(Value::List(items));
                }
                items.push(parse_value(tokens, position)?);
            }
        }
        "}" | ")" => None,
        "<>" => Some(Value::Null),
        scalar => Some(Value::Scalar(scalar.to_owned())),
    }
}

/// What a policy expression must compare: the table's `tenant_id` column (its attribute
/// number), through `=` on text, with `tenancy.bound_tenant()` (its function oid).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TenantComparison {
    pub(crate) tenant_attno: i16,
    pub(crate) text_eq: u32,
    pub(crate) bound_tenant: u32,
}

impl TenantComparison {
    /// Whether `expression` holds only for rows of the bound tenant: it is the comparison,
    /// or an `AND` with the comparison among its arms.
    pub(crate) fn is_implied_by(&self, expression: &Value) -> bool {
        let Value::Node(node) = expression else {
            return false;
        };
        match node.kind.as_str() {
            "OPEXPR" => self.is_comparison(node),
            "BOOLEXPR" if node.scalar("boolop") == Some("and") => {
                node.list("args").iter().any(|arm| self.is_implied_by(arm))
            }
            _ => false,
        }
    }

    fn is_comparison(&self, node: &Node) -> bool {
        if node.scalar("opno") != Some(self.text_eq.to_string().as_str()) {
            return false;
        }
        match node.list("args") {
            [left, right] => {
                (self.is_tenant_column(left) && self.is_bound_tenant(right))
                    || (self.is_bound_tenant(left) && self.is_tenant_column(right))
            }
            _ => false,
        }
    }

    fn is_tenant_column(&self, value: &Value) -> bool {
        let Value::Node(node) = value else {
            return false;
        };
        match node.kind.as_str() {
            "RELABELTYPE" => node
                .field("arg")
                .is_some_and(|arg| self.is_tenant_column(arg)),
            "VAR" => {
                node.scalar("varno") == Some("1")
                    && node.scalar("varlevelsup") == Some("0")
                    && node.scalar("varattno") == Some(self.tenant_attno.to_string().as_str())
            }
            _ => false,
        }
    }

    /// `tenancy.bound_tenant()`, called directly or as the one column of a sub-select with
    /// nothing else in it.
    fn is_bound_tenant(&self, value: &Value) -> bool {
        let Value::Node(node) = value else {
            return false;
        };
        match node.kind.as_str() {
            "RELABELTYPE" => node
                .field("arg")
                .is_some_and(|arg| self.is_bound_tenant(arg)),
            "FUNCEXPR" => {
                node.scalar("funcid") == Some(self.bound_tenant.to_string().as_str())
                    && node.list("args").is_empty()
            }
            // EXPR_SUBLINK: `(SELECT ..)` returning one value.
            "SUBLINK" if node.scalar("subLinkType") == Some("4") => {
                let Some(query) = node.node("subselect") else {
                    return false;
                };
                let from_nothing = matches!(query.field("rtable"), None | Some(Value::Null))
                    && query.node("jointree").is_some_and(|tree| {
                        matches!(tree.field("fromlist"), None | Some(Value::Null))
                            && matches!(tree.field("quals"), None | Some(Value::Null))
                    });
                let plain = ["groupClause", "havingQual", "limitCount", "limitOffset"]
                    .iter()
                    .all(|field| matches!(query.field(field), None | Some(Value::Null)));
                match query.list("targetList") {
                    [Value::Node(entry)] if from_nothing && plain => entry
                        .field("expr")
                        .is_some_and(|expr| self.is_bound_tenant(expr)),
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: TenantComparison = TenantComparison {
        tenant_attno: 1,
        text_eq: 98,
        bound_tenant: 16_500,
    };

    fn var(attno: i16) -> String {
        format!(
            "{{VAR :varno 1 :varattno {attno} :vartype 25 :vartypmod -1 :varcollid 100 \
             :varlevelsup 0 :varnosyn 1 :varattnosyn {attno} :location 60}}"
        )
    }

    fn function(oid: u32) -> String {
        format!(
            "{{FUNCEXPR :funcid {oid} :funcresulttype 25 :funcretset false :funcvariadic \
             false :funcformat 0 :funccollid 100 :inputcollid 0 :args <> :location 81}}"
        )
    }

    fn sublink(expr: &str) -> String {
        format!(
            "{{SUBLINK :subLinkType 4 :subLinkId 0 :testexpr <> :operName <> :subselect \
             {{QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> \
             :resultRelation 0 :hasAggs false :rtable <> :jointree {{FROMEXPR :fromlist <> \
             :quals <>}} :targetList ({{TARGETENTRY :expr {expr} :resno 1 :resname \
             bound_tenant :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}}) \
             :groupClause <> :havingQual <> :limitOffset <> :limitCount <> :stmt_location 0 \
             :stmt_len 0}} :location 72}}"
        )
    }

    fn eq(left: &str, right: &str, opno: u32) -> String {
        format!(
            "{{OPEXPR :opno {opno} :opfuncid 67 :opresulttype 16 :opretset false :opcollid 0 \
             :inputcollid 100 :args ({left} {right}) :location 70}}"
        )
    }

    fn holds(tree: &str) -> bool {
        CHECK.is_implied_by(&parse(tree).expect("a well-formed tree"))
    }

    #[test]
    fn the_canonical_policy_holds() {
        assert!(holds(&eq(&var(1), &sublink(&function(16_500)), 98)));
        assert!(holds(&eq(&sublink(&function(16_500)), &var(1), 98)));
        assert!(holds(&eq(&var(1), &function(16_500), 98)));
        let and = format!(
            "{{BOOLEXPR :boolop and :args ({} {{CONST :consttype 16 :consttypmod -1 \
             :constcollid 0 :constlen 1 :constbyval true :constisnull false :location 90 \
             :constvalue 1 [ 1 0 0 0 0 0 0 0 ]}}) :location 85}}",
            eq(&var(1), &sublink(&function(16_500)), 98)
        );
        assert!(holds(&and));
    }

    #[test]
    fn lookalikes_do_not() {
        // Another column, another operator, another function, OR with anything.
        assert!(!holds(&eq(&var(2), &sublink(&function(16_500)), 98)));
        assert!(!holds(&eq(&var(1), &sublink(&function(16_500)), 531)));
        assert!(!holds(&eq(&var(1), &sublink(&function(2_077)), 98)));
        let or = format!(
            "{{BOOLEXPR :boolop or :args ({} {}) :location 85}}",
            eq(&var(1), &sublink(&function(16_500)), 98),
            eq(&var(1), &var(1), 98)
        );
        assert!(!holds(&or));
        // The function's name in a string constant is not a call.
        assert!(!holds(
            "{CONST :consttype 25 :constvalue 32 [ 116 101 110 97 110 99 121 46 98 ] :location 1}"
        ));
        assert!(parse("{OPEXPR :opno 98").is_none());
    }
}
