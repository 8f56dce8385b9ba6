print("hello from bodywork")
