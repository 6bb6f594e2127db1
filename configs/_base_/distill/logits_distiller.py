# The distillation model every logit-distillation method uses, independent
# of the data set: one frozen teacher, the student's cross-entropy as
# `loss_ce` and the method's loss as `loss_distill`, both fed from the
# student's and teacher's logits (`head.fc`) and the labels the student
# head's loss receives. A method base sets the loss and the cross-entropy
# weight; an experiment adds the student and teacher networks.
#
# The student's cross-entropy is a distill loss, not the student head's own
# loss (calculate_student_loss=False): its weight is a setting of the method,
# and keeping it out of the student network lets an experiment take a model
# config unchanged.
model = dict(
    _scope_='mmrazor',
    type='StrictSingleTeacherDistill',
    calculate_student_loss=False,
    # The networks are mmpretrain ImageClassifiers.
    architecture=dict(_scope_='mmpretrain'),
    teacher=dict(_scope_='mmpretrain'),
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(
            logits=dict(type='ModuleOutputs', source='head.fc'),
            # The labels the head's loss receives (its second argument).
            gt_labels=dict(type='ModuleInputs', source='head.loss_module')),
        teacher_recorders=dict(
            logits=dict(type='ModuleOutputs', source='head.fc')),
        distill_losses=dict(
            loss_ce=dict(type='mmpretrain.CrossEntropyLoss')),
        loss_forward_mappings=dict(
            loss_ce=dict(
                cls_score=dict(from_student=True, recorder='logits'),
                label=dict(
                    from_student=True, recorder='gt_labels', data_idx=1)),
            loss_distill=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits'),
                gt_labels=dict(
                    from_student=True, recorder='gt_labels', data_idx=1)))))

# LoCaLossHook publishes the losses' calibration statistics (loca_ratio,
# loca_scale) when the logger writes, and tells DKD's warm-up the loop type.
# A config that sets its own custom_hooks replaces this list: keep the hook.
custom_hooks = [dict(type='LoCaLossHook')]
