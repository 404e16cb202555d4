// Package faults holds touchstream's process-level fault tests: the real binary run as
// child processes, killed with SIGKILL under load, with every count the tests assert
// printed in the test log. It has no code besides the tests.
package faults
