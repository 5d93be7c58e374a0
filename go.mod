module github.com/glasscast/glasscast

go 1.26.8

require (
	github.com/abema/go-mp4 v1.7.1 // indirect
	github.com/asticode/go-astikit v0.30.0 // indirect
	github.com/asticode/go-astits v1.16.0 // indirect
	github.com/bluenviron/gohlslib/v2 v2.2.5 // indirect
	github.com/bluenviron/gortmplib v1.0.2 // indirect
	github.com/bluenviron/mediacommon/v2 v2.9.4 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
