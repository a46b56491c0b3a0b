module github.com/porto-dev/porto

go 1.26.0
