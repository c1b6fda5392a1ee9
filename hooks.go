package mcsession

// hooks let tests wait for moments that nothing else shows, instead of
// reading goroutine stacks. A test sets them in Config before New; every
// hook is nil otherwise, and none is called on a request's path.
type hooks struct {
	shutdownBegan func()       // Shutdown was called
	retrying      func(*entry) // the retry loop is about to queue a pending session again
	retried       func()       // the retry loop finished a pass
	workerExited  func()       // a backup worker returned
}
