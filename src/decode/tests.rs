// placeholder until the decoder's tests land
