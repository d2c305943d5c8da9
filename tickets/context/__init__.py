"""Customer context: orders, interaction log, sentiment, churn risk, CSAT, data protection."""
