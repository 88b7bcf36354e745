//! One tenant's turn to use the template sandboxes ([`TenantTurn`]): at most one per tenant
//! (namespace) at a time, so one tenant's renders never take every sandbox.
//!
//! I/O contract: process-wide, in memory. Taking a turn never waits: it is given or refused at
//! once, and given back when the [`TenantTurn`] is dropped.

/// The tenants (namespaces) holding their turn.
static TURNS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// One tenant's turn to check or render templates: at most one per tenant at a time, held from
/// the first sandbox a reconcile needs until its render is done. A reconcile that does not get
/// it does not wait (it would hold a reconcile slot): it tries again shortly.
#[derive(Debug)]
pub(crate) struct TenantTurn {
    tenant: String,
}

impl TenantTurn {
    /// The tenant's turn, or `None` while another reconcile of the same tenant holds it.
    pub(crate) fn try_take(tenant: &str) -> Option<TenantTurn> {
        let mut turns = TURNS.lock().expect("turns lock");
        turns.insert(tenant.to_string()).then(|| TenantTurn {
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for TenantTurn {
    fn drop(&mut self) {
        TURNS.lock().expect("turns lock").remove(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_one_turn_at_a_time() {
        let first = TenantTurn::try_take("unit-team-a").expect("free");
        assert!(TenantTurn::try_take("unit-team-a").is_none(), "taken");
        let other = TenantTurn::try_take("unit-team-b").expect("another tenant's own turn");
        drop(first);
        assert!(TenantTurn::try_take("unit-team-a").is_some(), "given back");
        drop(other);
    }
}
