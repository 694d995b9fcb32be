//! Roles and operator scopes, and which grant satisfies which requirement.
//!
//! A connection has one role (`operator` or `node`) and a set of scopes. `operator.admin`
//! satisfies every operator scope; `operator.write` also satisfies `operator.read` and
//! `operator.talk`. Methods declare the scope they need (see `methods/`); a method without a
//! declared scope needs admin. Scopes a client asks for are kept only when they are known, so a
//! typo never widens a grant.

pub const READ: &str = "operator.read";
pub const WRITE: &str = "operator.write";
pub const ADMIN: &str = "operator.admin";
pub const APPROVALS: &str = "operator.approvals";
pub const PAIRING: &str = "operator.pairing";
pub const QUESTIONS: &str = "operator.questions";
pub const TALK: &str = "operator.talk";
pub const TALK_SECRETS: &str = "operator.talk.secrets";

/// Every operator scope this gateway knows.
pub const OPERATOR_SCOPES: &[&str] = &[READ, WRITE, ADMIN, APPROVALS, PAIRING, QUESTIONS, TALK, TALK_SECRETS];

/// The role a connection acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Node,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// Does `granted` satisfy `required`?
pub fn satisfied(required: &str, granted: &[String]) -> bool {
    let has = |s: &str| granted.iter().any(|g| g == s);
    if !required.starts_with("operator.") {
        return has(required);
    }
    has(required) || has(ADMIN) || (matches!(required, READ | TALK) && has(WRITE))
}

/// The first of `required` that `granted` does not satisfy.
pub fn missing<'a>(required: &[&'a str], granted: &[String]) -> Option<&'a str> {
    required.iter().copied().find(|r| !satisfied(r, granted))
}

/// The known operator scopes among those a client asked for, deduplicated, in a stable order.
pub fn normalize(requested: &[String]) -> Vec<String> {
    OPERATOR_SCOPES.iter().filter(|s| requested.iter().any(|r| r == *s)).map(|s| s.to_string()).collect()
}

/// Is every one of `wanted` covered by `approved` (directly or by implication)?
pub fn covered(wanted: &[String], approved: &[String]) -> bool {
    wanted.iter().all(|w| satisfied(w, approved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn implications() {
        assert!(satisfied(READ, &v(&[WRITE])));
        assert!(satisfied(TALK, &v(&[WRITE])));
        assert!(!satisfied(ADMIN, &v(&[WRITE])));
        assert!(!satisfied(WRITE, &v(&[READ])));
        assert!(satisfied(PAIRING, &v(&[ADMIN])));
        assert!(!satisfied(PAIRING, &v(&[READ, WRITE, APPROVALS])));
        assert_eq!(missing(&[READ, WRITE], &v(&[READ])), Some(WRITE));
        assert_eq!(missing(&[READ], &v(&[])), Some(READ));
        assert_eq!(normalize(&v(&["operator.write", "bogus", "operator.read", "operator.read"])), v(&[READ, WRITE]));
        assert!(covered(&v(&[READ]), &v(&[ADMIN])));
        assert!(!covered(&v(&[ADMIN]), &v(&[READ, WRITE])));
    }
}
