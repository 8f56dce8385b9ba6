// Package agent is bodywork's node agent: a test fixture that plays the
// kubelet's part for one Node of a real control plane, running the pods
// bound to that Node as local processes (see README.md).
package agent
