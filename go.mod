module github.com/mcsession/mcsession

go 1.24

require github.com/bradfitz/gomemcache v0.0.0-20260422231931-4d751bb6e37c

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
)
