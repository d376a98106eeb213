"""Regenerate the hand-designed histories in this folder: run from this folder with any Python + numpy.

Values are written as Keras writes them (float32 widened to float64, e.g. 0.699999988079071 for 21/30).
Validation accuracies are chosen as k/30, with k listed per file, so tests can compute the expected
diagnosis by hand; learning rates follow ReduceLROnPlateau(monitor="val_accuracy", factor=0.1,
patience=2) from 1e-3, logged as the rate used during each epoch.

* tfkeras2_lr.csv          tf.keras 2 keys (lr); k = 20,22,24,20,21,21,... (smallest n that fits: 30)
* keras3_learning_rate.csv Keras 3 keys (learning_rate); a real 10-image drop 24 -> 14 at epoch 6
* history.json             History.history dumped with json.dump; no learning rate
* old_keras_acc.csv        Keras < 2.3 keys (acc, val_acc); no learning rate
* one_class_collapse.csv   4/30 then 0/30 from epoch 2: the smallest n that fits is 15, not 30
* batch_averaged.csv       accuracies on no lattice (as from averaging over batches)
"""
import numpy as np, json
f32 = lambda x: repr(float(np.float32(x)))
def lrs(spec):
    out=[]
    for v,c in spec: out += [v]*c
    return out
def sloss(E, a, b, mid, w, rng, noise=0.0):
    t=np.arange(E); return a + (b-a)/(1+np.exp(-(t-mid)/w)) + noise*rng.normal(size=E)
def write_csv(name, cols, data):
    with open(name,"w") as fh:
        fh.write(",".join(cols)+"\n")
        for i in range(len(data["epoch"])):
            fh.write(",".join(str(data[c][i]) if c=="epoch" else f32(data[c][i]) for c in cols)+"\n")
rng=np.random.default_rng(1)
# 1 tf.keras 2 style (lr)
k=[20,22,24,20,21,21,21,21,21,21,21,21]; E=len(k)
d=dict(epoch=list(range(E)), val_accuracy=[x/30 for x in k],
       accuracy=list(np.linspace(0.55,0.93,E)), loss=list(sloss(E,1.1,0.25,4,1.5,rng)),
       val_loss=list(sloss(E,1.05,0.62,3,1.2,rng)),
       lr=lrs([(1e-3,5),(1e-4,2),(1e-5,2),(1e-6,2),(1e-7,1)]))
write_csv("tfkeras2_lr.csv",["epoch","accuracy","loss","lr","val_accuracy","val_loss"],d)
# 2 Keras 3 style (learning_rate)
k=[15,18,21,24,25,24,14,22,23,23,23,23,23,23,23]; E=len(k)
d=dict(epoch=list(range(E)), val_accuracy=[x/30 for x in k],
       accuracy=list(np.linspace(0.45,0.97,E)), loss=list(sloss(E,1.2,0.1,5,2,rng)),
       val_loss=list(sloss(E,1.1,0.55,4,1.5,rng)),
       learning_rate=lrs([(1e-3,7),(1e-4,2),(1e-5,2),(1e-6,2),(1e-7,2)]))
write_csv("keras3_learning_rate.csv",["epoch","accuracy","learning_rate","loss","val_accuracy","val_loss"],d)
# 3 History JSON, no learning rate
k=[12,16,19,21,22,22,23,21]; E=len(k)
h=dict(accuracy=[float(np.float32(x)) for x in np.linspace(0.4,0.9,E)],
       loss=[float(np.float32(x)) for x in sloss(E,1.3,0.3,3,1,rng)],
       val_accuracy=[float(np.float32(x/30)) for x in k],
       val_loss=[float(np.float32(x)) for x in sloss(E,1.2,0.7,3,1,rng)])
json.dump(h, open("history.json","w"))
# 4 old Keras (acc, val_acc), no lr
k=[9,13,17,19,19,20,18,19]; E=len(k)
d=dict(epoch=list(range(E)), val_acc=[x/30 for x in k], acc=list(np.linspace(0.35,0.8,E)),
       loss=list(sloss(E,1.4,0.5,3,1,rng)), val_loss=list(sloss(E,1.3,0.8,3,1,rng)))
write_csv("old_keras_acc.csv",["epoch","acc","loss","val_acc","val_loss"],d)
# 5 one-class collapse: 4/30 then 0/30; smallest n that fits is 15
k=[4,4,0,0,0,0,0,0,0,0]; E=len(k)
d=dict(epoch=list(range(E)), val_accuracy=[x/30 for x in k], accuracy=[0.1,0.11]+[0.1]*8,
       loss=[2.31,2.30]+[2.3026]*8, val_loss=[2.305,2.303]+[2.3026]*8,
       learning_rate=lrs([(1e-3,4),(1e-4,2),(1e-5,2),(1e-6,2)]))
write_csv("one_class_collapse.csv",["epoch","accuracy","learning_rate","loss","val_accuracy","val_loss"],d)
# 6 accuracies averaged over batches: on no small lattice
va=[0.7123456716537476,0.6931471824645996,0.7853981852531433,0.5772156715393066,0.7071067690849304,0.6180340051651001]
E=len(va)
d=dict(epoch=list(range(E)), val_accuracy=va, accuracy=list(np.linspace(0.6,0.9,E)),
       loss=list(sloss(E,1,0.4,2,1,rng)), val_loss=list(sloss(E,1,0.6,2,1,rng)))
write_csv("batch_averaged.csv",["epoch","accuracy","loss","val_accuracy","val_loss"],d)
