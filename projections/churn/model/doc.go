// Package model trains and applies churn models (流失预警模型) learned from the
// log: a logistic regression and gradient-boosted trees over the churn feature
// vectors (see projections/churn/features). It is pure Go: no database, no NATS,
// no wall clock; the same rows and options give the same model, byte for byte.
//
// # Data
//
// A Dataset is one row per (customer, month) snapshot: the feature values in the
// order of its Names and a 0/1 label (churned within the prediction window).
// Validate refuses ragged rows, non-finite values, labels other than 0 and 1 and
// a single class, naming the row and feature.
//
// # Missing values
//
// Unknown facts are -1 (features' convention). In a feature whose known training
// values are all >= 0, -1 means missing ("missing-aware"); elsewhere -1 is an
// ordinary value. The logistic model imputes a missing value with the mean of
// the known training values (0 after standardising) and, when the training rows
// had missing values in that feature, adds a learned missing-indicator
// coefficient; a missing value in a feature that had none in training only gets
// the mean. The trees need nothing special: -1 is a value below every known one,
// with a bin of its own, so a split can send unknowns either way.
//
// # Logistic regression
//
// Features are standardised with the mean and standard deviation of their known
// training values. The fit minimises the mean log loss plus Lambda/2 times the
// squared norm of the coefficients (not the intercept), by Newton's method with
// step halving, until no coefficient moves by Tolerance. Row sums run in fixed
// chunks added in chunk order, so every core count gives the same bits. With
// Balanced, the classes carry equal weight and the intercept is then moved by
// log(positives/negatives), so probabilities stay on the base rate's scale.
//
// # Gradient-boosted trees
//
// Trees are fitted on the logistic loss from the log odds of the base rate. Each
// feature gets at most MaxBins histogram bins, computed once from the training
// rows (each distinct value its own bin when there are few, else quantiles of a
// sample of at most 200,000 rows). Each round draws a Subsample of rows with a
// PCG generator seeded by Seed, grows a tree breadth first to Depth on the
// gradient and hessian histograms (the larger child's histogram is the parent's
// minus the smaller's), splits where the L2-regularised gain is largest and both
// children keep MinLeafRows rows and MinChildWeight hessian, and sets each leaf
// to -G/(H+Lambda) times LearningRate. A split is stored as a threshold on the
// raw value (left when value <= threshold), which routes every value exactly as
// its bin did. Each feature's histogram is summed by one goroutine in row order,
// so results are bit-identical on any number of cores. With ValidationShare, a
// seeded hash of the row index holds rows out; training stops when their log
// loss has not improved for EarlyStoppingRounds trees and keeps the best prefix.
//
// # Predictions and contributions
//
// Predict returns the probability, the logit, a bias and one contribution per
// feature, with bias + sum(contributions) = logit (to rounding). For the
// logistic model the bias is the intercept and a feature's contribution is its
// coefficient times its standardised value, plus its missing indicator's
// coefficient when missing. For the trees (Saabas attribution) every node keeps
// its expected value, the cover-weighted mean of its subtree's leaves, cover
// being the sampled training rows that reached it; along each tree's path the
// change in expected value at a split is credited to the split's feature, and
// the bias is the initial log odds plus every root's expected value. Predict
// reads values in the order of Features, which must be finite (as Validate
// requires of training rows); Align maps another order (such as
// features.Names()) by name and names any feature it lacks.
//
// # Threshold and metrics
//
// Threshold is the probability that alerts AlertRate (default 5%) of the
// training rows: the ceil(AlertRate*rows)-th highest training score, so ties at
// it may alert slightly more. Evaluate gives the exact AUC (average ranks for
// ties), the top-decile lift (ties across the cut count with their group's
// positive rate), and precision, recall and alerts at a threshold. A model
// records its metrics on the fitted rows and, if any, the held-out rows.
//
// # Versioning
//
// A Model encodes as canonical JSON (fields in declaration order, floats in
// shortest exact form, no timestamps). Its Version is "sha256:" and the hex
// SHA-256 of that encoding with Version empty, so equal content has equal
// versions and any change of data, options or code that changes the model
// changes it. Decode refuses unknown fields, malformed parameters (naming the
// field) and a Version that is not the content hash.
package model
