//! Daily budgets: what each agent has spent today (UTC), checked before every model call.
//!
//! The ledger is in memory and exact for this process: each model call is charged as soon as
//! its answer is in, before the next call is checked. After a restart it starts from what
//! `observability.sqlite` holds for the day ([`Ledger::seed`]), so a restart does not reset a
//! budget. A new UTC day starts every agent at zero.
//!
//! It must not decide anything else: max turns and tool loops are the run loop's
//! (`run.rs`, `loop_guard.rs`); this only answers "may this agent make another model call".

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use clawline_core::config::BudgetSettings;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    DailyTokens,
    DailyCost,
}

impl Limit {
    /// The label in metrics and the config key under `budget`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::DailyTokens => "daily_tokens",
            Limit::DailyCost => "daily_cost",
        }
    }
}

/// A refused model call: which limit, how much was used, what the limit is.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub agent: String,
    pub limit: Limit,
    pub used: f64,
    pub cap: f64,
}

impl Exceeded {
    /// What the user is told.
    pub fn message(&self) -> String {
        match self.limit {
            Limit::DailyTokens => format!(
                "stopped: agent `{}` has used {} tokens today (UTC); its daily limit is {} (budget.dailyTokens)",
                self.agent,
                thousands(self.used as u64),
                thousands(self.cap as u64)
            ),
            Limit::DailyCost => format!(
                "stopped: agent `{}` has spent ${:.2} today (UTC); its daily limit is ${:.2} (budget.dailyCostUsd)",
                self.agent, self.used, self.cap
            ),
        }
    }

    pub fn hint(&self) -> String {
        let key = match self.limit {
            Limit::DailyTokens => "dailyTokens",
            Limit::DailyCost => "dailyCostUsd",
        };
        format!(
            "the budget starts again at 00:00 UTC; to change it set agents.defaults.budget.{key} \
             (or agents.entries.{}.budget.{key}; 0 means no limit)",
            self.agent
        )
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The UTC day a time falls in, as a day number.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// When that day started, in Unix ms.
pub fn day_start_ms(ms: i64) -> i64 {
    day_of(ms) * DAY_MS
}

#[derive(Debug, Clone, Copy, Default)]
struct Spend {
    day: i64,
    tokens: u64,
    cost: f64,
}

/// Spending per agent for the current day.
#[derive(Debug, Default)]
pub struct Ledger {
    spent: Mutex<HashMap<String, Spend>>,
}

impl Ledger {
    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Spend>> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds what was spent earlier on `day` (read from the observability store at start).
    pub fn seed(&self, day: i64, by_agent: &BTreeMap<String, (u64, f64)>) {
        let mut spent = self.spent();
        for (agent, (tokens, cost)) in by_agent {
            let s = spent.entry(agent.clone()).or_default();
            if s.day != day {
                *s = Spend { day, ..Default::default() };
            }
            s.tokens += tokens;
            s.cost += cost;
        }
    }

    /// Whether `agent` may make another model call at `now_ms`.
    pub fn check(&self, agent: &str, budget: &BudgetSettings, now_ms: i64) -> Result<(), Exceeded> {
        let day = day_of(now_ms);
        let s = self.spent().get(agent).copied().filter(|s| s.day == day).unwrap_or_default();
        if let Some(cap) = budget.daily_tokens
            && s.tokens >= cap
        {
            return Err(Exceeded {
                agent: agent.into(),
                limit: Limit::DailyTokens,
                used: s.tokens as f64,
                cap: cap as f64,
            });
        }
        if let Some(cap) = budget.daily_cost_usd
            && s.cost >= cap
        {
            return Err(Exceeded { agent: agent.into(), limit: Limit::DailyCost, used: s.cost, cap });
        }
        Ok(())
    }

    /// Charges one model call.
    pub fn charge(&self, agent: &str, tokens: u64, cost: f64, now_ms: i64) {
        let day = day_of(now_ms);
        let mut spent = self.spent();
        let s = spent.entry(agent.to_string()).or_default();
        if s.day != day {
            *s = Spend { day, ..Default::default() };
        }
        s.tokens += tokens;
        if cost.is_finite() && cost > 0.0 {
            s.cost += cost;
        }
    }

    /// Today's tokens and cost for `agent`.
    pub fn today(&self, agent: &str, now_ms: i64) -> (u64, f64) {
        let day = day_of(now_ms);
        self.spent().get(agent).filter(|s| s.day == day).map_or((0, 0.0), |s| (s.tokens, s.cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_780_000_000_000;

    #[test]
    fn stops_at_either_limit_and_resets_next_day() {
        let l = Ledger::default();
        let b = BudgetSettings { daily_tokens: Some(1000), daily_cost_usd: Some(1.0) };
        assert!(l.check("main", &b, T).is_ok());
        l.charge("main", 999, 0.5, T);
        assert!(l.check("main", &b, T).is_ok());
        l.charge("main", 1, 0.0, T);
        let e = l.check("main", &b, T).expect_err("tokens");
        assert_eq!(e.limit, Limit::DailyTokens);
        assert!(e.message().contains("1,000 tokens today"), "{}", e.message());
        assert!(l.check("other", &b, T).is_ok(), "agents are separate");
        assert!(l.check("main", &b, T + DAY_MS).is_ok(), "a new day");
        let cost_only = BudgetSettings { daily_tokens: None, daily_cost_usd: Some(1.0) };
        l.charge("c", 10, 0.6, T);
        l.charge("c", 10, 0.4, T);
        let e = l.check("c", &cost_only, T).expect_err("cost");
        assert_eq!(e.limit, Limit::DailyCost);
        assert!(e.message().contains("$1.00"), "{}", e.message());
        assert!(l.check("c", &BudgetSettings::default(), T).is_ok(), "no limits");
    }

    #[test]
    fn seeding_adds_to_the_day() {
        let l = Ledger::default();
        let mut m = BTreeMap::new();
        m.insert("main".to_string(), (700, 0.25));
        l.seed(day_of(T), &m);
        l.charge("main", 300, 0.25, T);
        assert_eq!(l.today("main", T), (1000, 0.5));
        assert_eq!(day_start_ms(T) % DAY_MS, 0);
        assert_eq!(thousands(5_000_000), "5,000,000");
        assert_eq!(thousands(12), "12");
    }
}
