// Package childproc holds what every program of this module that starts
// child processes (test harnesses, examples, the load generator) needs to
// start them: the attributes that tie a child's life to its parent's.
//
// It does not import the testing package, so binaries can use it.
package childproc
