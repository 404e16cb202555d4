// Package churn is the churn read model (流失预警): a projection that folds the log
// into per-customer behaviour features (package features), scores every customer with
// the scorer the log has activated (a versioned rule scorer or a model trained from
// the log, package model), raises alerts with their reasons, follows the retention
// desk's actions on them, and keeps monthly feature snapshots for training.
//
// # Tables (one schema per version, churn_v1, ...)
//
//   - customers: one row per customer: the record (feature state, alert lifecycle,
//     last score with reasons) as a document, with score, model, region, value tier,
//     monthly value, open alert id and termination time as columns.
//   - scores: the score history, a row whenever the score moved by 0.01 or more.
//   - snapshots: the features as of the last instant of every local month the
//     customer lived through (values in features.Names() order), for training.
//   - alerts: every alert with its state, outcome, reasons, actions and its priority
//     (score × monthly value), the retention desk's queue.
//   - activations: the scorers activated in each partition, in log order.
//   - signals: the alert transitions this version emitted.
//
// The model store (schema churn_models, MigrateModels, SaveModel, LoadModel) holds
// trained models by the sha256 of their canonical content; it is state outside the
// log, shared by every version, and must be backed up.
//
// # Order and event time
//
// A batch is folded in stream order: a customer event into its customer's record, a
// clock.ticked into every live customer of its partition known before it, so that
// silence shows (days since the last recharge grow); after each, the customer is
// scored again as of its state's time. The projection never reads the wall clock:
// the same log gives the same features, scores, snapshots and alerts whatever the
// batch sizes. When an event moves a customer's time into a later local month, the
// features as of the end of each month left are snapshotted first (what was known
// then; a late event does not rewrite an earlier month's snapshot, except through a
// retraction's recomputation).
//
// # Scorers in the log
//
// A scorer becomes active through a churn.model_activated event published to every
// partition: an event is scored by the last activation met before it in its
// partition whose effective time is at or before the event's time; before any, by
// the rule version configured (Options.Rules). A name the process cannot resolve (a
// rule version other than the configured one, a model missing from the store or
// whose content does not hash to its name) parks the event. Options.Pin scores the
// whole history with one scorer, for a what-if or corrected rebuild.
//
// # Alerts
//
// An alert is raised when a score reaches the scorer's threshold, with a
// deterministic id (AlertID: the customer and the event whose score crossed), the
// score, the top reasons (features, contributions, the events behind them) and the
// customer's monthly value. Hysteresis: after an alert, the score must fall below
// the threshold minus Policy.Band before another can be raised; cool-down: none
// within Policy.CoolDown of event time after the last one closed. The desk's actions
// are events published by the console's command service: alert.acknowledged,
// offer.presented and offer.accepted naming the alert (actioned), alert.closed
// (retained or churned); a subscription.terminated closes an open alert as churned
// and ends scoring. Actions naming another alert than the customer's current one, or
// a closed one, change nothing. Every transition is recorded in the alerts table in
// every version, and becomes a signal (churn.alert_raised, _acknowledged, _actioned,
// _closed) in the version's signals table and the transactional outbox only where
// Batch.Emitting allows: the serving version, never a rebuild or a replay. Signals
// carry ids, scores and reasons, never personal data.
//
// A customer's state group (stable, warning, churned) is derived at query time
// (StateGroup) from its termination and open alert.
//
// # Corrections
//
// A feature fold cannot be undone incrementally: an event.retracted refolds the
// customer's features from its events in the log (Batch.History) without the
// retracted ones, rewriting the snapshots of the months crossed; alerts already raised
// are kept (they were acted upon), and the customer is scored again.
package churn
