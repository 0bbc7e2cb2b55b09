// Command hello is built by TestBuild.
package main

import "fmt"

func main() { fmt.Println("hello from a built binary") }
