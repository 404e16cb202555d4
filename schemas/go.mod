module github.com/touchstream/touchstream/schemas

go 1.26.8
