module bodywork.dev/cluster/agent

go 1.26.0
