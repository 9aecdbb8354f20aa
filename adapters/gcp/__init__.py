"""GCP adapters: functions-framework entry, Pub/Sub binding, Firestore store, Workflows."""
